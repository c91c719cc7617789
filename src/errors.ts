/**
 * One error type for every failure the relay reports on purpose, and its one mapping: each code's
 * HTTP status and Connect code (ERROR_CODES), the `Retry-After` it asks for, whether a retry can
 * cure it, and how any thrown value becomes one (toRelayError). The two renderings only format
 * what is decided here: the provider-shaped JSON body on the HTTP layer (src/http/render-error.ts)
 * and the ConnectError on the RPC routes (src/services/errors.ts). Messages are fixed strings:
 * they never echo token contents, keys or decrypted data.
 */
import { Code } from "@connectrpc/connect";
import { driverError, isTransientDatabaseError } from "./db/db-errors.js";

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
  | "quota_exhausted"
  | "already_exists"
  | "failed_precondition"
  | "upstream_unreachable"
  | "upstream_timeout"
  | "unavailable"
  | "internal";

/** HTTP status (DESIGN section 5) and Connect code of each code. */
export const ERROR_CODES: Readonly<Record<RelayErrorCode, { status: number; rpc: Code }>> = {
  bad_request: { status: 400, rpc: Code.InvalidArgument },
  unauthenticated: { status: 401, rpc: Code.Unauthenticated },
  permission_denied: { status: 403, rpc: Code.PermissionDenied },
  not_found: { status: 404, rpc: Code.NotFound },
  method_not_allowed: { status: 405, rpc: Code.InvalidArgument },
  payload_too_large: { status: 413, rpc: Code.InvalidArgument },
  unsupported_media_type: { status: 415, rpc: Code.InvalidArgument },
  rate_limited: { status: 429, rpc: Code.ResourceExhausted },
  calls_exhausted: { status: 429, rpc: Code.ResourceExhausted },
  budget_exhausted: { status: 429, rpc: Code.ResourceExhausted },
  /** A plan's window is spent for this subject (issue 24): it comes back when the window resets (Retry-After). */
  quota_exhausted: { status: 429, rpc: Code.ResourceExhausted },
  already_exists: { status: 409, rpc: Code.AlreadyExists },
  failed_precondition: { status: 412, rpc: Code.FailedPrecondition },
  upstream_unreachable: { status: 502, rpc: Code.Unavailable },
  upstream_timeout: { status: 504, rpc: Code.DeadlineExceeded },
  unavailable: { status: 503, rpc: Code.Unavailable },
  internal: { status: 500, rpc: Code.Internal },
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
    return ERROR_CODES[this.code].status;
  }

  /** The Connect code RPCs answer it with. */
  get rpcCode(): Code {
    return ERROR_CODES[this.code].rpc;
  }
}

/** Fixed message for every token failure: the reason is never told to the caller. */
export const INVALID_TOKEN = "invalid, expired or revoked token";

export function invalidToken(): RelayError {
  return new RelayError("unauthenticated", INVALID_TOKEN);
}

/**
 * Seconds a 503 asks for when its error names none: a database outage or no upstream key free
 * are not over in a second, and a client that waits this long costs nothing when they are.
 */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

/** `Retry-After` seconds for `err`, on both renderings (issue 19.6): its own, else the default for a 503. */
export function retryAfterOf(err: RelayError): number | undefined {
  return err.retryAfter ?? (err.status === 503 ? UNAVAILABLE_RETRY_AFTER_S : undefined);
}

/** Codes whose answer will not change on retry, whatever the client waits. */
const FINAL_CODES: ReadonlySet<RelayErrorCode> = new Set(["calls_exhausted", "budget_exhausted", "unauthenticated"]);

/**
 * Whether `err`'s answer tells SDKs not to retry (`x-should-retry: false`, issue 21.8a). A 401
 * carrying a challenge (`WWW-Authenticate`: DPoP, with a fresh nonce) invites a retry with a new proof.
 * An upstream timeout was sent and counted, and the provider may still be working on (and
 * billing) it: an SDK's own retries (two by default) would count and bill it twice more, and
 * time out alike. The application may still send it again, knowing so.
 */
export function isFinal(err: RelayError): boolean {
  // A plan window that resets in more than a minute: SDKs would retry within seconds, in vain.
  if (err.code === "quota_exhausted") return (err.retryAfter ?? 0) > 60;
  if (err.code === "upstream_timeout") return true;
  return FINAL_CODES.has(err.code) && err.headers?.["www-authenticate"] === undefined;
}

/**
 * Any thrown value as a RelayError; unknown errors become a fixed internal error. A database
 * outage (unreachable, stalled, pool exhausted, statement timeout: src/db/db-errors.ts) is the
 * service's, not the caller's: 503 `unavailable`, which both renderings give a Retry-After.
 * A database data exception (SQLSTATE class 22: a NUL in text, a number out of a column's range)
 * came from the request, not from a fault: 400 / InvalidArgument on both entry points.
 */
export function toRelayError(e: unknown): RelayError {
  if (e instanceof RelayError) return e;
  if (isTransientDatabaseError(e)) return new RelayError("unavailable", "database unavailable", { cause: e });
  if (/^22[0-9A-Z]{3}$/.test(driverError(e).code ?? "")) return new RelayError("bad_request", "invalid argument", { cause: e });
  return new RelayError("internal", "internal error", { cause: e });
}
