/**
 * DPoP proof verification (RFC 9449) for tokens bound to a client key (`cnf.jkt`, DESIGN 3.4).
 *
 * A proof is a compact JWS: `typ: dpop+jwt`, ES256 or EdDSA (Ed25519), the public key in the
 * `jwk` header whose RFC 7638 thumbprint must equal the token's `jkt`, and claims `htm`, `htu`
 * (the configured public origin plus the path, never the Host header), `iat`, `ath` (SHA-256
 * of the token) and a `jti` seen only once in its window. Server nonces are stateless: an HMAC
 * over a time bucket. Imported keys are cached by thumbprint. Failures carry a code and a
 * fixed message; the caller answers 401 with `WWW-Authenticate: DPoP error="<code>"`.
 *
 * jose computes thumbprints; the signature itself is checked with node:crypto's synchronous
 * verify, since jose 6 goes through WebCrypto and costs over twice as much per proof.
 */
import { createHash, createHmac, createPublicKey, verify, type JsonWebKey as NodeJwk, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";

export type DpopErrorCode = "invalid_dpop_proof" | "use_dpop_nonce";

export type DpopMessage =
  | "DPoP proof missing or malformed"
  | "DPoP proof type must be dpop+jwt"
  | "DPoP proof algorithm not allowed"
  | "DPoP proof key is not an allowed public key"
  | "DPoP proof key does not match the token"
  | "DPoP proof signature is invalid"
  | "DPoP proof method does not match"
  | "DPoP proof URL does not match"
  | "DPoP proof is too old or in the future"
  | "DPoP proof access token hash does not match"
  | "DPoP proof was already used"
  | "a fresh DPoP nonce is required";

export class DpopError extends Error {
  override readonly name = "DpopError";
  readonly code: DpopErrorCode;
  constructor(code: DpopErrorCode, message: DpopMessage) {
    super(message);
    this.code = code;
  }
}

/**
 * Remembers proof ids. A Redis implementation (dpop-replay-redis.ts): `SET key 1 NX EX ttl`,
 * seen when it fails.
 */
export interface ReplayCache {
  /**
   * True when `jti` was recorded within its TTL; otherwise records it for ttlSec and returns
   * false. `ageSec` is now - iat of the proof: a shared cache that cannot reach its store
   * answers "stale" for proofs older (or newer) than the narrower window it can vouch for.
   */
  seen(jti: string, ttlSec: number, ageSec?: number): Promise<boolean | "stale">;
}

/**
 * An in-process ReplayCache. Bounded: when full of live entries it answers "seen" (fails
 * closed) rather than forget a proof that could then be replayed. Size it to the peak proofs
 * per second times twice the iat window.
 */
export class MemoryReplayCache implements ReplayCache {
  private readonly expiry = new Map<string, number>(); // jti -> expiry (ms), oldest first
  private lastFullSweep = 0;
  constructor(
    private readonly maxEntries = 200_000,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** True while `jti` is recorded (without recording it). */
  has(jti: string): boolean {
    return (this.expiry.get(jti) ?? 0) > this.nowMs();
  }

  seen(jti: string, ttlSec: number): Promise<boolean> {
    const now = this.nowMs();
    const exp = this.expiry.get(jti);
    if (exp !== undefined && exp > now) return Promise.resolve(true);
    this.expiry.delete(jti);
    let swept = 0;
    for (const [key, e] of this.expiry) {
      if (e > now || ++swept > 8) break;
      this.expiry.delete(key);
    }
    if (this.expiry.size >= this.maxEntries && now - this.lastFullSweep >= 1000) {
      this.lastFullSweep = now;
      for (const [key, e] of this.expiry) if (e <= now) this.expiry.delete(key);
    }
    if (this.expiry.size >= this.maxEntries) return Promise.resolve(true);
    this.expiry.set(jti, now + ttlSec * 1000);
    return Promise.resolve(false);
  }

  get size(): number {
    return this.expiry.size;
  }
}

/** Server nonces for the `DPoP-Nonce` header. */
export interface NonceIssuer {
  issue(): string;
  check(nonce: string): boolean;
}

/**
 * Stateless nonces: base64url(HMAC-SHA256(secret, bucket)) cut to 128 bits, where bucket is
 * the current `bucketSec` slice of time; the previous bucket's nonce is still accepted, so a
 * nonce lives between bucketSec and twice that. Relays sharing the secret share nonces.
 */
export class HmacNonceIssuer implements NonceIssuer {
  private readonly memo = new Map<number, string>();
  constructor(
    private readonly secret: Uint8Array,
    private readonly bucketSec = 300,
    private readonly nowSec: () => number = () => Date.now() / 1000,
  ) {
    if (secret.length < 32) throw new RangeError("nonce secret must be at least 32 bytes");
  }

  issue(): string {
    return this.nonceFor(this.bucket());
  }

  check(nonce: string): boolean {
    const bucket = this.bucket();
    return nonce === this.nonceFor(bucket) || nonce === this.nonceFor(bucket - 1);
  }

  private bucket(): number {
    return Math.floor(this.nowSec() / this.bucketSec);
  }

  private nonceFor(bucket: number): string {
    let nonce = this.memo.get(bucket);
    if (nonce === undefined) {
      nonce = createHmac("sha256", this.secret).update(`relayapi dpop nonce ${bucket}`).digest("base64url").slice(0, 22);
      if (this.memo.size >= 4) this.memo.clear();
      this.memo.set(bucket, nonce);
    }
    return nonce;
  }
}

export interface DpopCheck {
  /** The `DPoP` request header. */
  proof: string | undefined;
  /** The request method, upper case. */
  method: string;
  /** The request URL as the client addressed it: the configured public origin + path (see htuFor). */
  url: string;
  /** The access token the request carries; `ath` must be its hash. */
  accessToken: string;
  /** The token's `cnf.jkt`. */
  jkt: string;
  nowSec: number;
  iatWindowSec?: number;
  replay: ReplayCache;
  nonce?: NonceIssuer;
}

const MAX_PROOF_LENGTH = 8192;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const MAX_CACHED_KEYS = 10_000;

interface CachedKey {
  alg: string;
  x: string;
  y: string | undefined;
  key: KeyObject;
}
/** Imported keys by thumbprint; oldest evicted first. */
const keys = new Map<string, CachedKey>();

function invalid(message: DpopMessage): never {
  throw new DpopError("invalid_dpop_proof", message);
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function decodeJson(part: string): Record<string, unknown> {
  try {
    return record(JSON.parse(Buffer.from(part, "base64url").toString("utf8"))) ?? invalid("DPoP proof missing or malformed");
  } catch (err) {
    if (err instanceof DpopError) throw err;
    return invalid("DPoP proof missing or malformed");
  }
}

/** The members of the proof's public key that its thumbprint covers. */
function publicMembers(jwkValue: unknown, alg: string): { x: string; y: string | undefined } {
  const jwk = record(jwkValue);
  if (!jwk || PRIVATE_MEMBERS.some((m) => m in jwk)) invalid("DPoP proof key is not an allowed public key");
  const ec = alg === "ES256";
  const { x, y } = jwk;
  const okType = ec ? jwk.kty === "EC" && jwk.crv === "P-256" && typeof y === "string" : jwk.kty === "OKP" && jwk.crv === "Ed25519";
  if (!okType || typeof x !== "string") invalid("DPoP proof key is not an allowed public key");
  return { x, y: ec ? (y as string) : undefined };
}

/** A cached key with the same members has the same thumbprint: no hashing or import again. */
function cachedKey(alg: string, jkt: string, x: string, y: string | undefined): KeyObject | undefined {
  const hit = keys.get(jkt);
  return hit && hit.alg === alg && hit.x === x && hit.y === y ? hit.key : undefined;
}

/** Imports the proof's key after checking it against the token's thumbprint. */
async function importKey(alg: string, jkt: string, x: string, yy: string | undefined): Promise<KeyObject> {
  const pub: JWK = yy !== undefined ? { kty: "EC", crv: "P-256", x, y: yy } : { kty: "OKP", crv: "Ed25519", x };
  if ((await calculateJwkThumbprint(pub, "sha256")) !== jkt) invalid("DPoP proof key does not match the token");
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pub as NodeJwk, format: "jwk" });
  } catch {
    return invalid("DPoP proof key is not an allowed public key");
  }
  if (keys.size >= MAX_CACHED_KEYS) keys.delete(keys.keys().next().value!);
  keys.set(jkt, { alg, x, y: yy, key });
  return key;
}

/** scheme://host[:port]/path of an http(s) URL, query and fragment dropped; undefined otherwise. */
function htuBase(url: string): string | undefined {
  try {
    const u = new URL(url);
    if ((u.protocol !== "https:" && u.protocol !== "http:") || u.username !== "" || u.password !== "") return undefined;
    return u.origin + u.pathname;
  } catch {
    return undefined;
  }
}

const withoutQuery = (url: string): string => url.replace(/[?#].*$/s, "");
const expectedHtu = new Map<string, string | undefined>(); // memo: few distinct request URLs

/** htu matches the request URL, query and fragment ignored, after URL normalisation. */
function sameHtu(htu: string, url: string): boolean {
  let expected = expectedHtu.get(url);
  if (expected === undefined && !expectedHtu.has(url)) {
    if (expectedHtu.size >= 1024) expectedHtu.clear();
    expectedHtu.set(url, (expected = htuBase(url)));
  }
  if (expected === undefined) return false;
  return withoutQuery(htu) === withoutQuery(url) || htuBase(htu) === expected;
}

/** The htu a request must be signed for: the configured public origin and the request path. */
export function htuFor(publicOrigin: string, path: string): string {
  return publicOrigin.replace(/\/+$/, "") + withoutQuery(path);
}

/** `ath`: base64url(SHA-256(token)). */
export function accessTokenHash(accessToken: string): string {
  return createHash("sha256").update(accessToken).digest("base64url");
}

/** Verifies the DPoP proof of one request; throws DpopError. */
export async function verifyDpopProof(c: DpopCheck): Promise<void> {
  const window = c.iatWindowSec ?? 60;
  const proof = c.proof;
  if (typeof proof !== "string" || proof.length > MAX_PROOF_LENGTH || !COMPACT_JWS.test(proof)) invalid("DPoP proof missing or malformed");
  const dot1 = proof.indexOf("."),
    dot2 = proof.lastIndexOf(".");
  const header = decodeJson(proof.slice(0, dot1));
  if (header.typ !== "dpop+jwt") invalid("DPoP proof type must be dpop+jwt");
  const alg = header.alg;
  // No `crit` extension is understood, so none may be required (RFC 7515 4.1.11).
  if ((alg !== "ES256" && alg !== "EdDSA") || "crit" in header) invalid("DPoP proof algorithm not allowed");
  const { x, y } = publicMembers(header.jwk, alg);
  const key = cachedKey(alg, c.jkt, x, y) ?? (await importKey(alg, c.jkt, x, y));
  let ok = false;
  try {
    const input = Buffer.from(proof.slice(0, dot2), "ascii");
    const signature = Buffer.from(proof.slice(dot2 + 1), "base64url");
    // ES256 signatures are r || s, 32 bytes each (RFC 7518 3.4).
    ok =
      alg === "ES256" ? signature.length === 64 && verify("sha256", input, { key, dsaEncoding: "ieee-p1363" }, signature) : verify(null, input, key, signature);
  } catch {
    // a malformed signature is just invalid
  }
  if (!ok) invalid("DPoP proof signature is invalid");
  const claims = decodeJson(proof.slice(dot1 + 1, dot2));
  if (claims.htm !== c.method) invalid("DPoP proof method does not match");
  if (typeof claims.htu !== "string" || !sameHtu(claims.htu, c.url)) invalid("DPoP proof URL does not match");
  const iat = claims.iat;
  if (typeof iat !== "number" || !(Math.abs(c.nowSec - iat) <= window)) invalid("DPoP proof is too old or in the future");
  if (claims.ath !== accessTokenHash(c.accessToken)) invalid("DPoP proof access token hash does not match");
  const jti = claims.jti;
  if (typeof jti !== "string" || jti.length === 0 || jti.length > 256) invalid("DPoP proof missing or malformed");
  if (c.nonce && (typeof claims.nonce !== "string" || !c.nonce.check(claims.nonce))) {
    throw new DpopError("use_dpop_nonce", "a fresh DPoP nonce is required");
  }
  // Last, so a refused proof does not use up its jti. Scoped by key: ids are the client's choice.
  const ttl = Math.max(1, Math.ceil(iat + window - c.nowSec) + 1);
  const replay = await c.replay.seen(`${c.jkt}.${jti}`, ttl, c.nowSec - iat);
  if (replay === "stale") invalid("DPoP proof is too old or in the future");
  if (replay) invalid("DPoP proof was already used");
}
