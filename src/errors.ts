/**
 * One error type for every failure the relay reports on purpose. It is rendered centrally:
 * as a ConnectError for RPCs (src/services/errors.ts) and as the provider-shaped JSON body on
 * the HTTP layer (src/http/render-error.ts). Messages are fixed strings: they never echo
 * token contents, keys or decrypted data.
 */
import { isTransientDatabaseError } from "./db/db-errors.js";

export type RelayErrorCode =
  | "bad_request"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "method_not_allowed"
  | "payload_too_large"
  | "unsupported_media_type"
  | "rate_limited"
  | "calls_exhausted"
  | "budget_exhausted"
  | "already_exists"
  | "failed_precondition"
  | "upstream_unreachable"
  | "upstream_timeout"
  | "unavailable"
  | "internal";

/** HTTP status of each code (DESIGN section 5). */
export const HTTP_STATUS: Record<RelayErrorCode, number> = {
  bad_request: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  calls_exhausted: 429,
  budget_exhausted: 429,
  already_exists: 409,
  failed_precondition: 412,
  upstream_unreachable: 502,
  upstream_timeout: 504,
  unavailable: 503,
  internal: 500,
};

export class RelayError extends Error {
  override name = "RelayError";
  readonly code: RelayErrorCode;
  /** Seconds, for `Retry-After`. */
  readonly retryAfter: number | undefined;
  /** Response headers the error needs (e.g. `WWW-Authenticate`, `DPoP-Nonce`); never secrets. */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: RelayErrorCode, message: string, opts: { retryAfter?: number; cause?: unknown; headers?: Record<string, string> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryAfter = opts.retryAfter;
    this.headers = opts.headers;
  }

  get status(): number {
    return HTTP_STATUS[this.code];
  }
}

/** Fixed message for every token failure: the reason is never told to the caller. */
export const INVALID_TOKEN = "invalid, expired or revoked token";

export function invalidToken(): RelayError {
  return new RelayError("unauthenticated", INVALID_TOKEN);
}

/**
 * Any thrown value as a RelayError; unknown errors become a fixed internal error. A database
 * outage (unreachable, stalled, pool exhausted, statement timeout: src/db/db-errors.ts) is the
 * service's, not the caller's: 503 `unavailable`, which both renderings give a Retry-After.
 */
export function toRelayError(e: unknown): RelayError {
  if (e instanceof RelayError) return e;
  if (isTransientDatabaseError(e)) return new RelayError("unavailable", "database unavailable", { cause: e });
  return new RelayError("internal", "internal error", { cause: e });
}
