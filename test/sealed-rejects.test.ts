/**
 * Every way a sealed token can be wrong gets the same fixed 401 and counts no call: a single
 * changed byte at 200 random positions, expiry, not-yet-valid, unknown kid, wrong key, bad
 * base64, bad claims; an ECDH-ES token naming a pool; an ECDH-ES token on a relay that does not
 * accept them; a token revoked by `<issuer>:<jti>` before its first use.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { EncryptJWT, importJWK, type JWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { INVALID_TOKEN } from "../src/errors.js";
import { sealToken, sealTokenForRelay } from "../src/sdk/index.js";
import { startRelay } from "./support/relay.js";
import { callsUsed, chat, createIssuer, expectFixed401, seconds, type TestIssuer } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ config: { acceptByokTokens: true } });
let issuer: TestIssuer;
let relayJwk: JWK;
beforeAll(async () => {
  issuer = await createIssuer(relay, "reject-app");
  relayJwk = JSON.parse((await relay.tokens.getSealingKey({})).jwk) as JWK;
});

const KEY = "sk-reject-suite-upstream-key";
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const OTHER = "=+/.!~*%$";

/** A small seeded PRNG (mulberry32), so a failing position can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Raw JWE sealing, for headers and claims the SDK would refuse to make. */
async function raw(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
  key: Uint8Array | CryptoKey = Buffer.from(issuer.secret, "base64url"),
): Promise<string> {
  return new EncryptJWT(claims).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: issuer.kid, ...header }).encrypt(key);
}

const valid = (jti: string, extra: Record<string, unknown> = {}) => ({ jti, exp: seconds(600), prv: "openai", key: KEY, max: 5, ...extra });

it("a single changed byte at 200 random positions: 401 with the fixed body, no call counted", async () => {
  const token = await sealToken(valid("tamper-1"), issuer.issuerKey);
  const seed = 20261122;
  const rand = prng(seed);
  const variants = Array.from({ length: 200 }, () => {
    const at = Math.floor(rand() * token.length);
    const pool = rand() < 0.9 ? B64URL : OTHER;
    let c = token[at]!;
    while (c === token[at]) c = pool[Math.floor(rand() * pool.length)]!;
    return { at, token: token.slice(0, at) + c + token.slice(at + 1) };
  });
  mock.reset();
  for (let i = 0; i < variants.length; i += 20) {
    const batch = variants.slice(i, i + 20);
    const results = await Promise.all(batch.map((v) => chat(relay, v.token)));
    results.forEach((r, j) => expectFixed401(r, `seed ${seed}, position ${batch[j]!.at}`));
  }
  expect(mock.requests).toHaveLength(0);
  expect(await callsUsed(relay, "reject-app:tamper-1")).toBe(0);
  // The untouched token works, so the 401s were the changes' doing.
  expect((await chat(relay, token)).status).toBe(200);
  expect(await callsUsed(relay, "reject-app:tamper-1")).toBe(1);
});

describe("each failure is the same fixed 401 and counts nothing", () => {
  const longSub = "x".repeat(257);
  const cases: [string, () => Promise<string>][] = [
    ["expired (exp 5 s ago: exp has no tolerance)", () => raw(valid("c-exp", { exp: seconds(-5) }))],
    ["not yet valid (nbf in 2 minutes)", () => raw(valid("c-nbf", { nbf: seconds(120) }))],
    ["issued in 2 minutes (iat beyond the 60 s skew)", () => raw(valid("c-iat", { iat: seconds(120) }))],
    ["unknown kid", () => raw(valid("c-kid"), { kid: "kid_nobodyknowsthis" })],
    ["wrong key for the kid", () => raw(valid("c-key"), {}, new Uint8Array(32).fill(1))],
    ["enc A128GCM", () => raw(valid("c-enc"), { enc: "A128GCM" }, new Uint8Array(16).fill(1))],
    ["missing jti", () => raw({ exp: seconds(600), prv: "openai", key: KEY })],
    ["missing exp", () => raw({ jti: "c-noexp", prv: "openai", key: KEY })],
    ["exp more than 366 days ahead", () => raw(valid("c-far", { exp: seconds(367 * 86400) }))],
    ["unknown provider", () => raw(valid("c-prv", { prv: "no-such-provider" }))],
    ["no upstream key", () => raw({ jti: "c-nokey", exp: seconds(600), prv: "openai" })],
    ["max 0", () => raw(valid("c-max0", { max: 0 }))],
    ["max as a string", () => raw(valid("c-maxs", { max: "5" }))],
    ["mdl not a list", () => raw(valid("c-mdl", { mdl: "gpt-mock" }))],
    ["pth not a path", () => raw(valid("c-pth", { pth: ["v1"] }))],
    ["org not an origin", () => raw(valid("c-org", { org: ["https://app.example/x"] }))],
    ["sub too long", () => raw(valid("c-sub", { sub: longSub }))],
    ["tls not a boolean", () => raw(valid("c-tls", { tls: "yes" }))],
    ["jti with a space", () => raw(valid("c jti"))],
    ["key with a space", () => raw(valid("c-keysp", { key: "sk bad key" }))],
    ["rpm that is not a whole number", () => raw(valid("c-rpm", { rpm: 0.5 }))],
    ["cnf whose jkt is not a thumbprint", () => raw(valid("c-cnf", { cnf: { jkt: "abc" } }))],
  ];
  it.each(cases)("%s", async (_what, make) => {
    const token = await make();
    mock.reset();
    expectFixed401(await chat(relay, token));
    expect(mock.requests).toHaveLength(0);
  });

  it("no call was counted for any of them", async () => {
    for (const jti of ["c-exp", "c-nbf", "c-iat", "c-kid", "c-key", "c-enc", "c-far", "c-prv", "c-max0", "c-pth", "c-sub", "c-rpm"]) {
      expect(await callsUsed(relay, `reject-app:${jti}`), jti).toBe(0);
    }
  });

  it.each([
    ["five segments that are not base64url JSON", "aaaa.bbbb.cccc.dddd.eeee"],
    ["a header that is not JSON", `${Buffer.from("not json").toString("base64url")}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA`],
    ["characters outside base64url", "eyJhbGciOiJkaXIifQ..abc!.def.ghi"],
    ["four segments", "eyJhbGciOiJkaXIifQ.x.y.z"],
    ["a JWS (three segments)", "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl"],
    ["longer than 4096 characters", "a.b.c.d." + "e".repeat(5000)],
  ])("bad base64 or shape: %s", async (_what, token) => {
    expectFixed401(await chat(relay, token));
  });

  it("the RPC rendering of the same failure is Unauthenticated with the same message", async () => {
    const token = await raw(valid("c-rpc", { exp: seconds(-5) }));
    const err = await relay.tokens.introspectToken({}, { headers: { authorization: `Bearer ${token}` } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect({ code: (err as ConnectError).code, message: (err as ConnectError).rawMessage }).toEqual({ code: Code.Unauthenticated, message: INVALID_TOKEN });
  });
});

describe("ECDH-ES (bring your own key)", () => {
  const toRelay = async (claims: Record<string, unknown>, jwk: JWK = relayJwk) =>
    new EncryptJWT(claims)
      .setProtectedHeader({ alg: "ECDH-ES", enc: "A256GCM", kid: jwk.kid! })
      .encrypt(await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, "ECDH-ES"));

  it("a token naming a pool is refused, with or without a key", async () => {
    await expect(sealTokenForRelay({ prv: "openai", pool: "shared" }, relayJwk)).rejects.toThrow(/may not name a pool/);
    mock.reset();
    expectFixed401(await chat(relay, await toRelay({ jti: "byok-pool", exp: seconds(600), prv: "openai", pool: "shared" })));
    expectFixed401(await chat(relay, await toRelay({ jti: "byok-pool2", exp: seconds(600), prv: "openai", pool: "shared", key: KEY })));
    expect(mock.requests).toHaveLength(0);
  });

  it("the same jti under two keys is two tokens: one key's holder cannot use up another's", async () => {
    const a = await toRelay({ jti: "shared-jti", exp: seconds(600), prv: "openai", key: "sk-byok-holder-a-0001", max: 1 });
    const b = await toRelay({ jti: "shared-jti", exp: seconds(600), prv: "openai", key: "sk-byok-holder-b-0002", max: 1 });
    expect((await chat(relay, a)).status).toBe(200);
    expect((await chat(relay, a)).status).toBe(429);
    expect((await chat(relay, b)).status).toBe(200);
  });

  it("is refused (fixed 401) by a relay that does not accept ECDH-ES tokens", async () => {
    const off = await startRelay({ mock });
    try {
      const key = await off.tokens.getSealingKey({});
      expect(key.enabled).toBe(false);
      const jwk = JSON.parse(key.jwk) as JWK;
      expect(jwk).toMatchObject({ kty: "OKP", crv: "X25519", alg: "ECDH-ES", use: "enc" });
      expect(jwk.d).toBeUndefined();
      mock.reset();
      expectFixed401(await chat(off, await sealTokenForRelay({ prv: "openai", key: KEY, max: 1 }, jwk)));
      expect(mock.requests).toHaveLength(0);
    } finally {
      await off.close();
    }
  });
});

describe("RevokeToken of <issuer>:<jti>", () => {
  it("before the first use: the token then gets the fixed 401, and its row shows revoked", async () => {
    const token = await sealToken(valid("revoke-early"), issuer.issuerKey);
    const res = await relay.tokens.revokeToken({ id: "reject-app:revoke-early" });
    expect(res.token?.revokedAt).toBeDefined();
    mock.reset();
    expectFixed401(await chat(relay, token));
    expect(mock.requests).toHaveLength(0);
    const row = (await relay.tokens.getToken({ id: "reject-app:revoke-early" })).token!;
    expect({ used: row.callsUsed, revoked: row.revokedAt !== undefined }).toEqual({ used: 0n, revoked: true });
  });

  it("after some use: the next call gets the fixed 401 at once, cached or not", async () => {
    const token = await sealToken(valid("revoke-late"), issuer.issuerKey);
    // The same jti sealed again is another secret (a new JWE), cached apart: both must go.
    const again = await sealToken(valid("revoke-late"), issuer.issuerKey);
    expect(again).not.toBe(token);
    expect((await chat(relay, token)).status).toBe(200);
    expect((await chat(relay, again)).status).toBe(200);
    await relay.tokens.revokeToken({ id: "reject-app:revoke-late" });
    expectFixed401(await chat(relay, token));
    expectFixed401(await chat(relay, again));
    expect(await callsUsed(relay, "reject-app:revoke-late")).toBe(2);
  });
});
