/**
 * An ID token's user as a relay token (issue 24.4): one `tokens` row per login and user, id
 * `login.<name>:<hash of the subject>`, inserted at the user's first call through the sealed
 * path (TokenMeta.sealed.firstRow, src/db/queries/call-counter.ts useSealed) and counted,
 * revoked and reported like any token. The user's calls carry the login's plan, provider,
 * upstream credential and limits; the row outlives any ID token (each token's own `exp` is
 * checked on every call), so revoking it locks that user out for good.
 */
import { createHash } from "node:crypto";
import { maskSecret } from "../keys/secret-box.js";
import { TOKEN_KIND_SEALED } from "../tokens/sealed-token.js";
import type { MetaLimits, TokenLimitValues } from "../tokens/token-limits.js";
import type { TokenMeta } from "../tokens/token-meta.js";

/** A login as the check path holds it: the row's settings, its key decrypted (memory only). */
export interface ActiveLogin {
  name: string;
  issuer: string;
  audience: string;
  jwksUrl: string;
  subjectClaim: string;
  plan: string;
  provider: string;
  upstreamKey: string | undefined;
  pool: string | undefined;
  limits: TokenLimitValues;
  metaLimits: MetaLimits;
}

/** Where a user's row ends: never, in practice (year 9999, still a valid proto Timestamp). */
export const LOGIN_ROW_EXPIRES_AT = new Date(Date.UTC(9999, 0, 1));
/** The subject as a row id part: 22 base64url characters of its SHA-256 (132 bits), within SEALED_ID. */
const SUBJECT_ID_LENGTH = 22;

/** The `tokens` row id of a login's user. */
export function loginUserId(login: string, subject: string): string {
  return `login.${login}:${createHash("sha256").update(subject).digest("base64url").slice(0, SUBJECT_ID_LENGTH)}`;
}

/** The TokenMeta of one verified ID token: the login's template for its user, ending with the token. */
export function loginTokenMeta(login: ActiveLogin, subject: string, expiresAtMs: number): TokenMeta {
  const id = loginUserId(login.name, subject);
  return {
    id,
    kind: TOKEN_KIND_SEALED,
    provider: login.provider,
    subject,
    plan: login.plan,
    upstreamKey: login.upstreamKey,
    pool: login.pool,
    ...login.metaLimits,
    // The ID token's own end, so a WebSocket session ends with it (src/realtime); the row's is far off.
    expiresAtMs,
    sealed: {
      kid: `login.${login.name}`,
      firstRow: {
        id,
        kind: TOKEN_KIND_SEALED,
        provider: login.provider,
        subject,
        upstreamKeyHint: login.upstreamKey === undefined ? "" : maskSecret(login.upstreamKey),
        pool: login.pool ?? null,
        plan: login.plan,
        ...login.limits,
        expiresAt: LOGIN_ROW_EXPIRES_AT,
      },
    },
  };
}
