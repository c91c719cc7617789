/**
 * An ID token's user as a relay token (issue 24.4): one `tokens` row per login and user, id
 * `login.<name>:<hash of the login's issuer, audience and the user's claim>`, inserted at the
 * user's first call through the sealed path (TokenMeta.sealed.firstRow,
 * src/db/queries/call-counter.ts useSealed) and counted, revoked and reported like any token.
 * The user's calls carry the login's plan, provider, upstream credential and limits; the row
 * outlives any ID token (each token's own `exp` is checked on every call), so revoking it locks
 * that user out for good.
 *
 * The user's subject is `<login>/<claim>`, not the bare claim: plan quota counters and stored
 * objects (src/relay/object-ownership.ts) are keyed by subject, and a bare `alice` would share
 * them with an issued token of subject `alice` and with another login's `alice`. The row id
 * hashes the issuer and audience too, so a login removed and added again under the same name
 * for another identity provider starts its users on fresh rows (used calls, revocations).
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
/** The user as a row id part: 22 base64url characters of a SHA-256 (132 bits), within SEALED_ID. */
const USER_ID_LENGTH = 22;
/** A subject's length, as an issued token's (src/tokens/validate-limits.ts) and as usage records keep it. */
export const LOGIN_SUBJECT_MAX = 256;

/** What a login's users are told apart by: its name, and the identity provider it trusts. */
export type LoginIdentity = Pick<ActiveLogin, "name" | "issuer" | "audience">;

/** The start every `tokens` row id of a login's users shares (their open sessions close with the login). */
export function loginUserIdPrefix(login: string): string {
  return `login.${login}:`;
}

/** The `tokens` row id of the user whose subject claim is `claim`. */
export function loginUserId(login: LoginIdentity, claim: string): string {
  // Neither the audience (printable) nor the claim (claimValue) holds a NUL: the last two split the parts unambiguously.
  const hash = createHash("sha256").update(`${login.issuer}\0${login.audience}\0${claim}`).digest("base64url");
  return loginUserIdPrefix(login.name) + hash.slice(0, USER_ID_LENGTH);
}

/** The user's subject (usage, plan quotas, stored objects): the claim scoped by the login. */
export function loginSubject(login: string, claim: string): string {
  return `${login}/${claim}`;
}

/**
 * A subject claim's value as a string, or undefined when it cannot name a user: a non-empty
 * string without NUL, or an integer (some identity providers number their users) as its
 * decimal digits. Only integers a double holds exactly: past 2^53 two users' ids could have been
 * rounded to the same number when the token was parsed.
 */
export function claimValue(raw: unknown): string | undefined {
  if (typeof raw === "number") return Number.isSafeInteger(raw) ? String(raw) : undefined;
  if (typeof raw !== "string" || raw === "" || raw.includes("\0")) return undefined;
  return raw;
}

/** The TokenMeta of one verified ID token: the login's template for the user whose claim is `claim`, ending with the token. */
export function loginTokenMeta(login: ActiveLogin, claim: string, expiresAtMs: number): TokenMeta {
  const id = loginUserId(login, claim);
  const subject = loginSubject(login.name, claim);
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
