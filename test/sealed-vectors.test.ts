/**
 * The committed test vectors (test/vectors/*.json) through the relay's own code path
 * (openSealedToken), at each vector's `now`: valid ones open to exactly their claims and to the
 * expected token view; every case of invalid.json is the fixed 401. The SDK re-seals the same
 * claims under the same keys and the relay opens those too (a JWE differs per sealing).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { importJWK, jwtDecrypt, type JWK } from "jose";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { INVALID_TOKEN, RelayError } from "../src/errors.js";
import type { ProviderRegistry } from "../src/providers/registry.js";
import { sealToken, sealTokenForRelay } from "../src/sdk/index.js";
import type { IssuerKeyring } from "../src/tokens/issuer-keyring.js";
import { openSealedToken, type SealedDeps } from "../src/tokens/sealed-token.js";
import type { TokenMeta } from "../src/tokens/token-meta.js";

const DIR = join(import.meta.dirname, "vectors");
const load = <T>(name: string): T => JSON.parse(readFileSync(join(DIR, name), "utf8")) as T;

interface Expected {
  id: string;
  provider: string;
  subject: string;
  maxCalls: number | null;
  models: string[];
  paths: string[];
  origins: string[];
  maxBodyBytes: number | null;
  toolsAllowed: boolean;
  expiresAt: string;
  upstreamKeyHint: string;
}
interface Vector {
  alg: "dir" | "ECDH-ES";
  issuer?: string;
  issuerKey?: { kid: string; secret: string };
  relayPublicJwk?: JWK;
  relayPrivateJwk?: JWK;
  now: number;
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  jwe: string;
  decryptedClaims: Record<string, unknown>;
  expected: Expected;
}
interface Invalid {
  issuerKey: { kid: string; secret: string };
  now: number;
  cases: { description: string; jwe: string }[];
}

const dirBasic = load<Vector>("dir-basic.json");
const dirAll = load<Vector>("dir-all-claims.json");
const ecdh = load<Vector>("ecdh-es.json");
const invalid = load<Invalid>("invalid.json");

const providers = { get: (id: string) => (id === "openai" ? { id } : undefined) } as unknown as ProviderRegistry;

function keyringOf(issuer: string, key: { kid: string; secret: string }): IssuerKeyring {
  const entry = { kid: key.kid, issuer, key: Buffer.from(key.secret, "base64url") };
  return { get: (kid: string) => (kid === key.kid ? entry : undefined) } as unknown as IssuerKeyring;
}

/** The relay's dependencies of the check path, with no key pools (no vector names one). */
function deps(d: Pick<SealedDeps, "keyring" | "relayKey">): SealedDeps {
  const pools = { get: () => undefined };
  return { ...d, providers, pools } as unknown as SealedDeps;
}

async function depsFor(v: Vector): Promise<SealedDeps> {
  if (v.alg === "dir") return deps({ keyring: keyringOf(v.issuer!, v.issuerKey!), relayKey: undefined });
  const privateKey = await importJWK(v.relayPrivateJwk!, "ECDH-ES");
  const none = { get: () => undefined } as unknown as IssuerKeyring;
  return deps({ keyring: none, relayKey: { kid: String(v.relayPublicJwk!.kid), privateKey: privateKey as CryptoKey, publicJwk: v.relayPublicJwk! } });
}

function view(m: TokenMeta): Expected {
  const row = m.sealed!.firstRow;
  return {
    id: m.id,
    provider: m.provider,
    subject: m.subject,
    maxCalls: m.maxCalls,
    models: [...m.models],
    paths: [...m.paths],
    origins: [...m.origins],
    maxBodyBytes: m.maxBodyBytes,
    toolsAllowed: row.toolsAllowed ?? false,
    expiresAt: new Date(m.expiresAtMs).toISOString(),
    upstreamKeyHint: row.upstreamKeyHint ?? "",
  };
}

async function refused(p: Promise<unknown>): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RelayError);
  expect((e as RelayError).message).toBe(INVALID_TOKEN);
  expect((e as RelayError).status).toBe(401);
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe.each([
  ["dir-basic", dirBasic],
  ["dir-all-claims", dirAll],
  ["ecdh-es", ecdh],
])("vector %s", (_name, v) => {
  it("decrypts to exactly its claims, with its header", async () => {
    vi.setSystemTime(v.now * 1000);
    expect(v.decryptedClaims).toEqual(v.claims);
    const key = v.alg === "dir" ? Buffer.from(v.issuerKey!.secret, "base64url") : await importJWK(v.relayPrivateJwk!, "ECDH-ES");
    const { payload, protectedHeader } = await jwtDecrypt(v.jwe, key);
    expect(payload).toEqual(v.decryptedClaims);
    expect(protectedHeader).toMatchObject(v.header);
  });

  it("opens through the relay's check path to the expected token", async () => {
    vi.setSystemTime(v.now * 1000);
    const meta = await openSealedToken(v.jwe, await depsFor(v));
    expect(view(meta)).toEqual(v.expected);
    expect(meta.upstreamKey).toBe(v.claims.key);
  });

  it("is refused once expired (exp is exact) and before nbf/iat beyond the 60 s skew", async () => {
    const deps = await depsFor(v);
    vi.setSystemTime((v.claims.exp as number) * 1000);
    await refused(openSealedToken(v.jwe, deps));
    vi.setSystemTime(((v.claims.iat as number) - 61) * 1000);
    await refused(openSealedToken(v.jwe, deps));
    vi.setSystemTime(((v.claims.iat as number) - 59) * 1000);
    await expect(openSealedToken(v.jwe, deps)).resolves.toMatchObject({ id: v.expected.id });
  });

  it("re-sealed by the SDK with the same key, opens to the same token", async () => {
    vi.setSystemTime(v.now * 1000);
    const claims = { ...v.claims } as Parameters<typeof sealToken>[0];
    const again = v.alg === "dir" ? await sealToken(claims, v.issuerKey!) : await sealTokenForRelay(claims, v.relayPublicJwk!);
    expect(again).not.toBe(v.jwe);
    expect(view(await openSealedToken(again, await depsFor(v)))).toEqual(v.expected);
  });
});

describe("invalid vectors", () => {
  const vectorDeps = deps({ keyring: keyringOf("vectors", invalid.issuerKey), relayKey: undefined });
  it.each(invalid.cases.map((c) => [c.description, c.jwe]))("refuses %s", async (_d, jwe) => {
    vi.setSystemTime(invalid.now * 1000);
    await refused(openSealedToken(jwe, vectorDeps));
  });

  it("uses dir-basic's key and time (so the cases fail for their stated reason only)", async () => {
    expect(invalid.issuerKey).toEqual(dirBasic.issuerKey);
    vi.setSystemTime(invalid.now * 1000);
    await expect(openSealedToken(dirBasic.jwe, vectorDeps)).resolves.toMatchObject({ id: dirBasic.expected.id });
  });
});
