/**
 * Sealed tokens (DESIGN 3.2): a compact JWE minted offline, either `alg: dir` under an
 * issuer's 256-bit key (`kid`) or `alg: ECDH-ES` (X25519) to the relay's public key. Only
 * `enc: A256GCM`. Claims: `jti` and `exp` required; `prv` provider; `key` inline upstream key
 * or `pool` (issuer tokens only); the limits' claims (`max`, `mdl`, ... `cnf`: the table in
 * src/tokens/token-limits.ts); `sub`, `nbf`, `iat`.
 *
 * Every failure is the same fixed 401 (`invalidToken()`): nothing about why, nothing from the
 * token. A malformed claim fails the token; unknown claims are ignored.
 */
import { createHash } from "node:crypto";
import { jwtDecrypt, type JWTPayload } from "jose";
import { invalidToken, RelayError } from "../errors.js";
import { maskSecret } from "../keys/secret-box.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { IssuerKeyring } from "./issuer-keyring.js";
import { MAX_TTL_MS, validateLimits } from "./validate-limits.js";
import type { RelayKey } from "./relay-key.js";
import { limitsFromClaims, metaLimitsOf } from "./token-limits.js";
import type { TokenMeta } from "./token-meta.js";

export const TOKEN_KIND_SEALED = 2;
/** Tolerated clock difference between the minting backend and the relay, for nbf and iat (exp is exact). */
export const CLOCK_SKEW_SECONDS = 60;
const JWE_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const JTI = /^[A-Za-z0-9._~:-]{1,128}$/;
/** An RFC 7638 SHA-256 thumbprint, base64url (a DPoP binding: the limits table's `bindJkt`). */
export { JKT } from "./token-limits.js";

export function looksSealed(token: string): boolean {
  return JWE_SHAPE.test(token);
}

/**
 * True when every segment is canonical base64url. Decoders ignore the spare low bits of a
 * segment's last character, so without this check up to 16 spellings of one token would open
 * the same claims: a changed byte must never leave a token valid.
 */
function canonicalSegments(token: string): boolean {
  return token.split(".").every((seg) => Buffer.from(seg, "base64url").toString("base64url") === seg);
}

export interface SealedDeps {
  keyring: IssuerKeyring;
  providers: ProviderRegistry;
  pools: PoolRegistry;
  /** Set only when the operator accepts ECDH-ES (bring-your-own-key) tokens. */
  relayKey: RelayKey | undefined;
}

/** Opens and checks a sealed token; any failure is the fixed 401. */
export async function openSealedToken(token: string, deps: SealedDeps): Promise<TokenMeta> {
  let scope = "";
  let kid = "";
  let payload: JWTPayload;
  if (!canonicalSegments(token)) throw invalidToken();
  try {
    const result = await jwtDecrypt(
      token,
      (header) => {
        if (header.enc !== "A256GCM" || typeof header.kid !== "string") throw invalidToken();
        kid = header.kid;
        if (header.alg === "dir") {
          const key = deps.keyring.get(header.kid);
          if (!key) throw invalidToken();
          scope = key.issuer;
          return key.key;
        }
        if (header.alg === "ECDH-ES" && deps.relayKey && header.kid === deps.relayKey.kid) return deps.relayKey.privateKey;
        throw invalidToken();
      },
      {
        keyManagementAlgorithms: ["dir", "ECDH-ES"],
        contentEncryptionAlgorithms: ["A256GCM"],
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ["jti", "exp"],
      },
    );
    payload = result.payload;
  } catch {
    throw invalidToken();
  }
  try {
    return claimsToMeta(payload, scope, kid, deps.providers, deps.pools);
  } catch {
    throw invalidToken();
  }
}

function claimsToMeta(c: JWTPayload, issuer: string, kid: string, providers: ProviderRegistry, pools: PoolRegistry): TokenMeta {
  const jti = c.jti;
  const exp = c.exp;
  if (typeof jti !== "string" || !JTI.test(jti) || typeof exp !== "number") throw bad();
  // jose applies its clock tolerance to exp too; here exp is exact (nbf and iat keep the skew).
  const now = Date.now();
  if (exp * 1000 <= now || exp * 1000 - now > MAX_TTL_MS) throw bad();
  // jose accepts any iat; one from the future beyond the skew is a wrong clock or a forgery.
  if (typeof c.iat === "number" && c.iat * 1000 > now + CLOCK_SKEW_SECONDS * 1000) throw bad();
  const provider = c.prv;
  if (typeof provider !== "string" || !providers.get(provider)) throw bad();
  const key = optionalString(c.key);
  const pool = optionalString(c.pool);
  // An ECDH-ES token may never name a server-held pool (DESIGN 3.2), whatever else it says.
  if (!issuer && pool !== undefined) throw bad();
  // Exactly one credential; a pool must exist and serve the token's provider.
  if ((key === undefined) === (pool === undefined)) throw bad();
  if (pool !== undefined && pools.providerOf(pool) !== provider) throw bad();
  const subject = optionalString(c.sub) ?? "";
  const plan = optionalString(c.pln);
  // A plan's quotas are the operator's to assign: an ECDH-ES token is minted by anyone holding
  // the relay's public key, who could otherwise spend another user's plan (issue 24).
  if (!issuer && plan !== undefined) throw bad();
  const limits = limitsFromClaims(c);
  validateLimits({ subject, plan, upstreamKey: key, ...limits });
  // ECDH-ES tokens are scoped by their key's hash: one key's holder cannot touch another's jti.
  const scope = issuer || "byok-" + createHash("sha256").update(key!).digest("hex").slice(0, 16);
  const id = `${scope}:${jti}`;
  const expiresAt = new Date(exp * 1000);
  return {
    id,
    kind: TOKEN_KIND_SEALED,
    provider,
    subject,
    plan,
    upstreamKey: key,
    pool,
    ...metaLimitsOf(limits),
    expiresAtMs: expiresAt.getTime(),
    sealed: {
      kid,
      firstRow: {
        id,
        kind: TOKEN_KIND_SEALED,
        provider,
        subject,
        upstreamKeyHint: key === undefined ? "" : maskSecret(key),
        pool: pool ?? null,
        plan: plan ?? null,
        ...limits,
        expiresAt,
      },
    },
  };
}

function optionalString(v: unknown): string | undefined {
  if (v !== undefined && typeof v !== "string") throw bad();
  return v;
}

function bad(): RelayError {
  return new RelayError("unauthenticated", "bad claims");
}
