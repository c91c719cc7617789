/**
 * Verifying an app's OIDC ID token (issue 24.4) with jose: the issuer's keys from its remote JWK
 * set (cached, refetched on an unknown `kid` at most once per cool-down, each fetch bounded),
 * RS256, ES256 or EdDSA only (so `alg: none` and an HMAC keyed with the public key are refused
 * before any key is looked up), `iss`, `aud`, `exp` and `nbf` checked with 60 s of skew.
 *
 * Two failures, told apart on purpose: a token that is not valid is the fixed 401; keys that
 * cannot be had (the JWKS endpoint times out, refuses, answers something else than a key set)
 * are a 503, since the token may be fine and a retry may succeed. Header-provided key locations
 * (`jku`, `x5u`, `jwk`) are never used: the key set is the admin's URL only.
 */
import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { invalidToken, RelayError } from "../errors.js";

/** The algorithms issuers sign ID tokens with; the asymmetric ones only. */
export const ID_TOKEN_ALGORITHMS = ["RS256", "ES256", "EdDSA"];
/** Tolerated clock difference with the issuer for `exp`, `nbf` and `iat`. */
export const ID_TOKEN_SKEW_SECONDS = 60;
/** Longest a key set fetch may take; a call waiting on it fails with 503 after that. */
export const JWKS_TIMEOUT_MS = 2000;
/** After a fetch, an unknown `kid` waits this long before it may cause another (jose's default). */
export const JWKS_COOLDOWN_MS = 30_000;
/** A key set is refetched after this long even when every `kid` is known. */
export const JWKS_MAX_AGE_MS = 600_000;

/** A compact JWS: three base64url segments (a sealed JWE has five; the signature may be empty for `alg: none`). */
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function looksSigned(token: string): boolean {
  return JWS_SHAPE.test(token);
}

/** A remote key set for `url`; jose shares one pending fetch between concurrent callers. */
export function remoteKeys(url: string): JWTVerifyGetKey {
  return createRemoteJWKSet(new URL(url), {
    timeoutDuration: JWKS_TIMEOUT_MS,
    cooldownDuration: JWKS_COOLDOWN_MS,
    cacheMaxAge: JWKS_MAX_AGE_MS,
  });
}

/** The unverified claims, to choose which login's keys verify the token; undefined: not a JWT. */
export function peekClaims(token: string): JWTPayload | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

export interface Expected {
  issuer: string;
  audience: string;
  keys: JWTVerifyGetKey;
}

/** The verified claims, or RelayError: 401 for the token, 503 when the keys cannot be fetched. */
export async function verifyIdToken(token: string, expected: Expected): Promise<JWTPayload> {
  let unavailable: unknown;
  // Key lookups that fail for want of the key set (not for want of a key matching the token)
  // are remembered here, so they are not mistaken for a bad token below.
  const keys: JWTVerifyGetKey = async (header, jws) => {
    try {
      return await expected.keys(header, jws);
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys || e instanceof errors.JOSENotSupported)) unavailable = e;
      throw e;
    }
  };
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      algorithms: ID_TOKEN_ALGORITHMS,
      issuer: expected.issuer,
      audience: expected.audience,
      clockTolerance: ID_TOKEN_SKEW_SECONDS,
      requiredClaims: ["exp"],
    }));
  } catch {
    if (unavailable !== undefined) {
      throw new RelayError("unavailable", "the identity provider's signing keys cannot be fetched", { cause: unavailable, retryAfter: 5 });
    }
    throw invalidToken();
  }
  // jose checks `iat` only against a maximum age; one from the future is a wrong clock or a forgery.
  if (typeof payload.iat === "number" && payload.iat * 1000 > Date.now() + ID_TOKEN_SKEW_SECONDS * 1000) throw invalidToken();
  return payload;
}
