/** DPoP proofs (RFC 9449) signed with real ES256 and Ed25519 keys, and each way to get one wrong. */
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { SignJWT, base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { DpopError, HmacNonceIssuer, MemoryReplayCache, accessTokenHash, htuFor, verifyDpopProof, type DpopCheck } from "./dpop.js";

const NOW = 1_760_000_000;
const TOKEN = "rly_test_token_value";
const URL_ = "https://relay.example/api/openai/v1/chat/completions";

interface Client {
  alg: "ES256" | "EdDSA";
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

async function client(alg: "ES256" | "EdDSA"): Promise<Client> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined, extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

interface ProofOptions {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  drop?: string[];
  key?: CryptoKey | Uint8Array;
}

async function proof(c: Client, o: ProofOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = { htm: "POST", htu: URL_, iat: NOW, jti: randomUUID(), ath: accessTokenHash(TOKEN), ...o.claims };
  for (const k of o.drop ?? []) delete claims[k];
  const header = { typ: "dpop+jwt", alg: c.alg, jwk: c.jwk, ...o.header } as { alg: string };
  return new SignJWT(claims).setProtectedHeader(header).sign(o.key ?? c.privateKey);
}

function check(c: Client, p: string, extra: Partial<DpopCheck> = {}): DpopCheck {
  return { proof: p, method: "POST", url: URL_, accessToken: TOKEN, jkt: c.jkt, nowSec: NOW, replay: new MemoryReplayCache(), ...extra };
}

async function refusal(c: DpopCheck): Promise<{ code: string; message: string }> {
  try {
    await verifyDpopProof(c);
  } catch (err) {
    if (err instanceof DpopError) return { code: err.code, message: err.message };
    throw err;
  }
  return expect.fail("expected a DpopError");
}

const invalid = (message: string) => ({ code: "invalid_dpop_proof", message });

let es: Client, ed: Client, otherEs: Client, otherEd: Client;
beforeAll(async () => {
  [es, ed, otherEs, otherEd] = await Promise.all([client("ES256"), client("EdDSA"), client("ES256"), client("EdDSA")]);
});

describe.each(["ES256", "EdDSA"] as const)("%s proofs", (alg) => {
  const c = (): Client => (alg === "ES256" ? es : ed);
  const other = (): Client => (alg === "ES256" ? otherEs : otherEd);

  it("accept a valid proof, twice from the key cache, and refuse its replay", async () => {
    const replay = new MemoryReplayCache();
    const p = await proof(c());
    await expect(verifyDpopProof(check(c(), p, { replay }))).resolves.toBeUndefined();
    await expect(verifyDpopProof(check(c(), await proof(c()), { replay }))).resolves.toBeUndefined();
    expect(await refusal(check(c(), p, { replay }))).toEqual(invalid("DPoP proof was already used"));
  });

  it("ignore the query and fragment of htu and normalise case and default ports", async () => {
    const p = await proof(c(), { claims: { htu: "https://RELAY.example:443/api/openai/v1/chat/completions?x=1#f" } });
    await expect(verifyDpopProof(check(c(), p, { url: URL_ + "?stream=true" }))).resolves.toBeUndefined();
  });

  it.each([
    ["htm", { claims: { htm: "GET" } }, "DPoP proof method does not match"],
    ["htm case", { claims: { htm: "post" } }, "DPoP proof method does not match"],
    ["htu path", { claims: { htu: "https://relay.example/api/openai/v1/embeddings" } }, "DPoP proof URL does not match"],
    ["htu host", { claims: { htu: "https://evil.example/api/openai/v1/chat/completions" } }, "DPoP proof URL does not match"],
    ["htu scheme", { claims: { htu: "http://relay.example/api/openai/v1/chat/completions" } }, "DPoP proof URL does not match"],
    ["htu userinfo", { claims: { htu: "https://u@relay.example/api/openai/v1/chat/completions" } }, "DPoP proof URL does not match"],
    ["htu missing", { drop: ["htu"] }, "DPoP proof URL does not match"],
    ["ath", { claims: { ath: accessTokenHash("another token") } }, "DPoP proof access token hash does not match"],
    ["ath missing", { drop: ["ath"] }, "DPoP proof access token hash does not match"],
    ["stale iat", { claims: { iat: NOW - 61 } }, "DPoP proof is too old or in the future"],
    ["future iat", { claims: { iat: NOW + 61 } }, "DPoP proof is too old or in the future"],
    ["string iat", { claims: { iat: String(NOW) } }, "DPoP proof is too old or in the future"],
    ["iat missing", { drop: ["iat"] }, "DPoP proof is too old or in the future"],
    ["jti missing", { drop: ["jti"] }, "DPoP proof missing or malformed"],
    ["typ JWT", { header: { typ: "JWT" } }, "DPoP proof type must be dpop+jwt"],
    ["typ missing", { header: { typ: undefined } }, "DPoP proof type must be dpop+jwt"],
  ] as [string, ProofOptions, string][])("refuse a wrong %s", async (_, o, message) => {
    expect(await refusal(check(c(), await proof(c(), o)))).toEqual(invalid(message));
  });

  it("accept iat at the edges of the window", async () => {
    for (const iat of [NOW - 60, NOW + 60]) await expect(verifyDpopProof(check(c(), await proof(c(), { claims: { iat } })))).resolves.toBeUndefined();
    await expect(verifyDpopProof(check(c(), await proof(c(), { claims: { iat: NOW - 100 } }), { iatWindowSec: 120 }))).resolves.toBeUndefined();
  });

  it("refuse a jwk carrying the private key", async () => {
    const priv = await exportJWK(c().privateKey);
    expect(priv.d).toBeDefined();
    expect(await refusal(check(c(), await proof(c(), { header: { jwk: priv } })))).toEqual(invalid("DPoP proof key is not an allowed public key"));
  });

  it("refuse a key that is not the token's, even one whose jkt is claimed", async () => {
    expect(await refusal(check(c(), await proof(other())))).toEqual(invalid("DPoP proof key does not match the token"));
    // Signed by another key but naming this client's jwk: the signature fails.
    expect(await refusal(check(c(), await proof(c(), { key: other().privateKey })))).toEqual(invalid("DPoP proof signature is invalid"));
  });

  it("refuse a tampered payload", async () => {
    const [h, , s] = (await proof(c())).split(".");
    const forged = base64url.encode(JSON.stringify({ htm: "POST", htu: URL_, iat: NOW, jti: "x", ath: accessTokenHash(TOKEN) }));
    expect(await refusal(check(c(), `${h}.${forged}.${s}`))).toEqual(invalid("DPoP proof signature is invalid"));
  });
});

describe("proof shape and algorithms", () => {
  it("refuses a missing, oversized or non-compact proof", async () => {
    for (const p of [undefined, "", "a.b", "a.b.c.d", "a b.c.d", "x".repeat(9000) + ".a.b", "W10.e30.sig", "bm90IGpzb24.e30.sig"]) {
      expect(await refusal(check(es, p as string))).toEqual(invalid("DPoP proof missing or malformed"));
    }
  });

  it("refuses HS256, none and RS256 proofs", async () => {
    const secret = new TextEncoder().encode("k".repeat(32));
    const hs = await new SignJWT({ htm: "POST", htu: URL_, iat: NOW, jti: "1", ath: accessTokenHash(TOKEN) })
      .setProtectedHeader({ typ: "dpop+jwt", alg: "HS256", jwk: es.jwk })
      .sign(secret);
    expect(await refusal(check(es, hs))).toEqual(invalid("DPoP proof algorithm not allowed"));
    const none = `${base64url.encode(JSON.stringify({ typ: "dpop+jwt", alg: "none", jwk: es.jwk }))}.${base64url.encode("{}")}.`;
    expect(await refusal(check(es, none))).toEqual(invalid("DPoP proof algorithm not allowed"));
    const rsa = await generateKeyPair("RS256", { extractable: true });
    const rsaJwk = await exportJWK(rsa.publicKey);
    const rs = await new SignJWT({ htm: "POST", htu: URL_, iat: NOW, jti: "1", ath: accessTokenHash(TOKEN) })
      .setProtectedHeader({ typ: "dpop+jwt", alg: "RS256", jwk: rsaJwk })
      .sign(rsa.privateKey);
    expect(await refusal(check(es, rs, { jkt: await calculateJwkThumbprint(rsaJwk) }))).toEqual(invalid("DPoP proof algorithm not allowed"));
  });

  it("refuses a key of the wrong type for its alg, and Ed448", async () => {
    expect(await refusal(check(es, await proof(ed, { header: { jwk: es.jwk } })))).toEqual(invalid("DPoP proof key is not an allowed public key"));
    expect(await refusal(check(ed, await proof(es, { header: { jwk: ed.jwk } })))).toEqual(invalid("DPoP proof key is not an allowed public key"));
    const ed448 = generateKeyPairSync("ed448").publicKey.export({ format: "jwk" }) as JWK;
    expect(await refusal(check(ed, await proof(ed, { header: { jwk: ed448 } })))).toEqual(invalid("DPoP proof key is not an allowed public key"));
  });

  it("ignores extra public members in the jwk (the thumbprint does not cover them)", async () => {
    await expect(verifyDpopProof(check(es, await proof(es, { header: { jwk: { ...es.jwk, kid: "k1", use: "sig" } } })))).resolves.toBeUndefined();
  });
});

describe("nonces", () => {
  const secret = new Uint8Array(32).fill(9);
  let clock = NOW;
  const issuer = new HmacNonceIssuer(secret, 300, () => clock);

  it("asks for a nonce when the proof has none, a stale one or a forged one", async () => {
    clock = NOW;
    const use = { code: "use_dpop_nonce", message: "a fresh DPoP nonce is required" };
    expect(await refusal(check(es, await proof(es), { nonce: issuer }))).toEqual(use);
    const old = issuer.issue();
    clock = NOW + 600;
    expect(await refusal(check(es, await proof(es, { claims: { nonce: old } }), { nonce: issuer }))).toEqual(use);
    expect(await refusal(check(es, await proof(es, { claims: { nonce: "x".repeat(22) } }), { nonce: issuer }))).toEqual(use);
    expect(await refusal(check(es, await proof(es, { claims: { nonce: 5 } }), { nonce: issuer }))).toEqual(use);
  });

  it("accepts the current and the previous bucket's nonce, and a refused proof keeps its jti", async () => {
    clock = NOW;
    const replay = new MemoryReplayCache();
    const previous = issuer.issue();
    clock = NOW + 300;
    const current = issuer.issue();
    expect(current).not.toBe(previous);
    expect(current).toMatch(/^[A-Za-z0-9_-]{22}$/);
    await expect(verifyDpopProof(check(es, await proof(es, { claims: { nonce: current } }), { nonce: issuer, replay }))).resolves.toBeUndefined();
    await expect(verifyDpopProof(check(es, await proof(es, { claims: { nonce: previous } }), { nonce: issuer, replay }))).resolves.toBeUndefined();
    const jti = randomUUID();
    await refusal(check(es, await proof(es, { claims: { jti } }), { nonce: issuer, replay }));
    await expect(verifyDpopProof(check(es, await proof(es, { claims: { jti, nonce: current } }), { nonce: issuer, replay }))).resolves.toBeUndefined();
  });

  it("differ across secrets and refuse short secrets", () => {
    const a = new HmacNonceIssuer(secret, 300, () => NOW);
    const b = new HmacNonceIssuer(new Uint8Array(32).fill(1), 300, () => NOW);
    expect(a.issue()).not.toBe(b.issue());
    expect(b.check(a.issue())).toBe(false);
    expect(() => new HmacNonceIssuer(new Uint8Array(16))).toThrow(RangeError);
  });
});

describe("MemoryReplayCache", () => {
  it("forgets an id after its TTL", async () => {
    let now = 0;
    const cache = new MemoryReplayCache(10, () => now);
    expect(await cache.seen("a", 2)).toBe(false);
    expect(await cache.seen("a", 2)).toBe(true);
    now = 1999;
    expect(await cache.seen("a", 2)).toBe(true);
    now = 2000;
    expect(await cache.seen("a", 2)).toBe(false);
  });

  it("stays bounded, sweeping expired ids, and fails closed when full of live ones", async () => {
    let now = 0;
    const cache = new MemoryReplayCache(3, () => now);
    for (const id of ["a", "b", "c"]) expect(await cache.seen(id, 10)).toBe(false);
    expect(await cache.seen("d", 10)).toBe(true); // full of live ids: refuse rather than forget one
    expect(cache.size).toBe(3);
    now = 10_000;
    expect(await cache.seen("d", 10)).toBe(false);
    expect(cache.size).toBe(1);
  });

  it("is scoped by key in verifyDpopProof: one jti for two keys is not a replay", async () => {
    const replay = new MemoryReplayCache();
    await verifyDpopProof(check(es, await proof(es, { claims: { jti: "same" } }), { replay }));
    await expect(verifyDpopProof(check(ed, await proof(ed, { claims: { jti: "same" } }), { replay }))).resolves.toBeUndefined();
  });

  it("passes the proof's age to the cache, and a 'stale' answer (shared cache unreachable) refuses it as too old", async () => {
    const ages: (number | undefined)[] = [];
    const degraded = {
      seen: async (_jti: string, _ttl: number, age?: number) => (ages.push(age), age !== undefined && Math.abs(age) <= 5 ? false : ("stale" as const)),
    };
    await expect(verifyDpopProof(check(es, await proof(es, { claims: { iat: NOW - 3 } }), { replay: degraded }))).resolves.toBeUndefined();
    expect(await refusal(check(es, await proof(es, { claims: { iat: NOW - 10 } }), { replay: degraded }))).toEqual(
      invalid("DPoP proof is too old or in the future"),
    );
    expect(await refusal(check(es, await proof(es, { claims: { iat: NOW + 6 } }), { replay: degraded }))).toEqual(
      invalid("DPoP proof is too old or in the future"),
    );
    expect(ages).toEqual([3, 10, -6]);
    const has = new MemoryReplayCache();
    expect(has.has("a")).toBe(false);
    await has.seen("a", 1);
    expect(has.has("a")).toBe(true);
  });
});

describe("helpers", () => {
  it("htuFor joins the configured origin and the path, never a Host header, without the query", () => {
    expect(htuFor("https://relay.example/", "/api/x/v1/chat?y=1")).toBe("https://relay.example/api/x/v1/chat");
    expect(htuFor("https://relay.example", "//evil.example/x")).toBe("https://relay.example//evil.example/x");
  });
  it("accessTokenHash is base64url(SHA-256)", () => {
    // RFC 9449 section 7.1 example.
    expect(accessTokenHash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")).toBe("fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
  });
});
