/**
 * Minting sealed tokens (DESIGN 3.2) in a backend, offline: a compact JWE built with `jose`,
 * either `alg: dir` + `enc: A256GCM` under an issuer key, or `alg: ECDH-ES` (X25519) sealed to
 * the relay's public key. Runs in Node and in browsers (WebCrypto only, no `node:` modules).
 *
 * The checks here mirror the relay's, so a mistake fails at mint time with a message instead
 * of later as the relay's one fixed 401.
 */
import { base64url, calculateJwkThumbprint, EncryptJWT, importJWK, type JWK } from "jose";
import { LimitError, limitsFromClaims, type LimitClaims } from "../tokens/token-limits.js";
import { planProblem } from "../plans/plan-name.js";

/**
 * The claims of a sealed token. Times are seconds since the epoch. Unknown claims are ignored
 * by the relay; a malformed known claim fails the token. The limits (`max`, `mdl`, `pth`,
 * `org`, `mbb`, `rpm`, `mtk`, `mxn`, `bud`, `cnf`, `tls`) are the relay's limits table's
 * claims (src/tokens/token-limits.ts), documented there.
 */
export interface SealedTokenClaims extends LimitClaims {
  /** Unique id, 1-128 of `A-Z a-z 0-9 . _ ~ : -`. The relay's id of the token is `<issuer>:<jti>`. */
  jti: string;
  /** Expiry (exact: no clock tolerance), at most 366 days ahead. */
  exp: number;
  /** Not before (the relay tolerates 60 s of clock skew). */
  nbf?: number;
  /** Issued at (may be at most 60 s in the relay's future). */
  iat?: number;
  /** The end user, free text (at most 256 characters), shown in usage. */
  sub?: string;
  /** A plan on the relay (`relayapi plan create`): the subject's calls count against its quotas. Needs `sub`. */
  pln?: string;
  /** Provider id, e.g. `openai`; it must exist on the relay. */
  prv: string;
  /** Inline upstream API key. Exactly one of `key` and `pool`. */
  key?: string;
  /** A key pool held by the relay (issuer tokens only, never ECDH-ES). */
  pool?: string;
}

/**
 * What `sealToken` takes: `jti` defaults to a random id, `exp` to one hour from now, `iat` to now.
 * `bindKey` is the client's public JWK (EC P-256 or OKP Ed25519, as the browser or app exported
 * it): the token is then bound to it (`cnf.jkt` = its RFC 7638 thumbprint) and every request
 * must carry a DPoP proof signed by the matching private key.
 */
export type SealInput = Omit<SealedTokenClaims, "jti" | "exp"> & { jti?: string; exp?: number; bindKey?: JWK };

/** An issuer key as `relayapi issuer create` prints it: the kid and the base64url 32-byte secret. */
export interface IssuerKey {
  kid: string;
  secret: string | Uint8Array;
}

export const DEFAULT_TTL_SECONDS = 3600;
const MAX_TTL_SECONDS = 366 * 24 * 3600;
const JTI = /^[A-Za-z0-9._~:-]{1,128}$/;
const PROVIDER = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** A fresh random `jti` (128 bits, base64url). */
export function newJti(): string {
  return base64url.encode(globalThis.crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * Seals claims under an issuer key (`alg: dir`). `issuerKey` is `{ kid, secret }` or the
 * `kid:secret` string that `relayapi issuer create` prints.
 */
export async function sealToken(claims: SealInput, issuerKey: IssuerKey | string): Promise<string> {
  const { kid, secret } = parseIssuerKey(issuerKey);
  const payload = await complete(claims);
  return new EncryptJWT({ ...payload }).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid }).encrypt(secret);
}

/**
 * Seals claims to the relay's public key (`alg: ECDH-ES`, X25519), as printed by
 * `relayapi pubkey` or returned by `TokenService.GetSealingKey`. Such a token carries its own
 * upstream key and may never name a pool; the relay accepts it only when its operator turned
 * bring-your-own-key tokens on.
 */
export async function sealTokenForRelay(claims: SealInput, relayPublicJwk: JWK | string): Promise<string> {
  const jwk: JWK = typeof relayPublicJwk === "string" ? (JSON.parse(relayPublicJwk) as JWK) : relayPublicJwk;
  if (jwk.kty !== "OKP" || jwk.crv !== "X25519" || typeof jwk.x !== "string" || jwk.d !== undefined) {
    throw new TypeError("the relay key must be a public X25519 JWK");
  }
  if (typeof jwk.kid !== "string" || jwk.kid === "") throw new TypeError("the relay key has no kid");
  if (claims.pool !== undefined) throw new TypeError("an ECDH-ES token may not name a pool: it must carry its own key");
  const payload = await complete(claims);
  const key = await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, "ECDH-ES");
  return new EncryptJWT({ ...payload }).setProtectedHeader({ alg: "ECDH-ES", enc: "A256GCM", kid: jwk.kid }).encrypt(key);
}

function parseIssuerKey(k: IssuerKey | string): { kid: string; secret: Uint8Array } {
  let kid: string;
  let secret: string | Uint8Array;
  if (typeof k === "string") {
    const colon = k.lastIndexOf(":");
    if (colon < 1) throw new TypeError("an issuer key looks like <kid>:<secret>");
    kid = k.slice(0, colon);
    secret = k.slice(colon + 1);
  } else {
    ({ kid, secret } = k);
  }
  let bytes: Uint8Array;
  try {
    bytes = typeof secret === "string" ? base64url.decode(secret) : secret;
  } catch {
    throw new TypeError("the issuer secret must be base64url");
  }
  if (kid === "" || bytes.length !== 32) throw new TypeError("an issuer key is a kid and a 32-byte secret");
  return { kid, secret: bytes };
}

/** Fills the defaults and checks the claims as the relay will. */
async function complete(input: SealInput): Promise<SealedTokenClaims> {
  const fail = (why: string): never => {
    throw new TypeError(`sealed token: ${why}`);
  };
  const now = Math.floor(Date.now() / 1000);
  const { bindKey, ...claims } = input;
  const c: SealedTokenClaims = { ...claims, jti: input.jti ?? newJti(), exp: input.exp ?? now + DEFAULT_TTL_SECONDS, iat: input.iat ?? now };
  if (bindKey !== undefined) {
    if (input.cnf !== undefined) fail("give bindKey or cnf, not both");
    c.cnf = { jkt: await bindingThumbprint(bindKey).catch(() => fail("bindKey must be a public EC P-256 or OKP Ed25519 JWK")) };
  }
  if (!JTI.test(c.jti)) fail("jti must be 1-128 of A-Z a-z 0-9 . _ ~ : -");
  if (!Number.isFinite(c.exp) || c.exp <= now || c.exp > now + MAX_TTL_SECONDS) fail("exp must be in the future and within 366 days");
  if (typeof c.prv !== "string" || !PROVIDER.test(c.prv)) fail("prv must be a provider id");
  if ((c.key === undefined) === (c.pool === undefined)) fail("exactly one of key and pool");
  if (c.key !== undefined && (c.key === "" || c.key.length > 4096 || /[\0-\x20\x7f]/.test(c.key))) fail("key must be 1-4096 printable characters");
  if (c.sub !== undefined && (typeof c.sub !== "string" || c.sub.length > 256)) fail("sub must be at most 256 characters");
  if (c.pln !== undefined) {
    const planIssue = typeof c.pln === "string" ? planProblem(c.pln, c.sub ?? "") : "pln must be a string";
    if (planIssue !== undefined) fail(`pln: ${planIssue}`);
  }
  try {
    limitsFromClaims(c);
  } catch (e) {
    if (e instanceof LimitError) fail(e.claimMessage);
    throw e;
  }
  return c;
}

/** The thumbprint of a client's public DPoP key; a JWK with private parts is refused. */
async function bindingThumbprint(jwk: JWK): Promise<string> {
  const ok = (jwk.kty === "EC" && jwk.crv === "P-256" && typeof jwk.y === "string") || (jwk.kty === "OKP" && jwk.crv === "Ed25519");
  if (!ok || typeof jwk.x !== "string" || jwk.d !== undefined) throw new TypeError("not a public DPoP key");
  await importJWK(
    jwk.kty === "EC" ? { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y } : { kty: "OKP", crv: "Ed25519", x: jwk.x },
    jwk.kty === "EC" ? "ES256" : "EdDSA",
  );
  return calculateJwkThumbprint(jwk, "sha256");
}
