/**
 * The RPC rendering of RelayError (its HTTP rendering is src/http/render-error.ts). An
 * interceptor maps every error a handler throws, unary or mid-stream, so no handler builds
 * its own; anything that is not a RelayError or ConnectError becomes a fixed "internal error",
 * logged once with the RPC's method. Each error is also noted on the RPC's Answer, so it is
 * counted by its reason and a 5xx gets its warn line (src/observe/answer-counter.ts).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { isTransientDatabaseError } from "../db/db-errors.js";
import { RelayError, toRelayError, type RelayErrorCode } from "../errors.js";
import { retryAfterOf } from "../http/render-error.js";
import type { Logger } from "../log.js";
import { kAnswer, noteFailure, type Answer } from "../observe/answer-counter.js";

const CODE: Record<RelayErrorCode, Code> = {
  bad_request: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  method_not_allowed: Code.InvalidArgument,
  payload_too_large: Code.InvalidArgument,
  unsupported_media_type: Code.InvalidArgument,
  rate_limited: Code.ResourceExhausted,
  calls_exhausted: Code.ResourceExhausted,
  budget_exhausted: Code.ResourceExhausted,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  upstream_unreachable: Code.Unavailable,
  upstream_timeout: Code.DeadlineExceeded,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
};

/** `method` (`package.Service/Method`) names the RPC on the error line. */
export function toConnectError(e: unknown, log?: Logger, method?: string): ConnectError {
  if (e instanceof ConnectError) return e;
  // A database outage answers `unavailable` with Retry-After (issue 19.2), not `internal`.
  if (isTransientDatabaseError(e)) e = toRelayError(e);
  if (e instanceof RelayError) {
    const meta = new Headers();
    // Every unavailable answer says when to come back (issue 19.6), as on the HTTP layer.
    const retryAfter = retryAfterOf(e);
    if (retryAfter !== undefined) meta.set("retry-after", String(retryAfter));
    for (const [name, value] of Object.entries(e.headers ?? {})) meta.set(name, value);
    return new ConnectError(e.message, CODE[e.code], meta);
  }
  // SQLSTATE class 22 (data exception): a value the database cannot take, such as a NUL in
  // text or a number out of a column's range. It came from the request, not from a fault.
  if (/^22[0-9A-Z]{3}$/.test(sqlState(e) ?? "")) return new ConnectError("invalid argument", Code.InvalidArgument);
  log?.error("rpc failed", { method, err: e });
  return new ConnectError("internal error", Code.Internal);
}

/** The SQLSTATE of a database error, drivers' and drizzle's wrappers (`cause`) included. */
function sqlState(e: unknown): string | undefined {
  for (let cur = e, depth = 0; typeof cur === "object" && cur !== null && depth < 4; cur = (cur as { cause?: unknown }).cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const fail = (e: unknown): ConnectError => mapFailure(e, log, `${req.service.typeName}/${req.method.name}`, req.contextValues.get(kAnswer));
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapStreamErrors(res.message, fail) };
    } catch (e) {
      throw fail(e);
    }
  };
}

/** The ConnectError for `e`, noted on the RPC's Answer (counted by reason, 5xx logged once). */
function mapFailure(e: unknown, log: Logger, method: string, answer: Answer | undefined): ConnectError {
  const ce = toConnectError(e, log, method);
  if (answer !== undefined) {
    answer.method = method;
    noteFailure(answer, e, ce);
    // toConnectError wrote the error line of an unforeseen error: no second line for it.
    answer.logged = ce.code === Code.Internal && !(e instanceof RelayError) && !(e instanceof ConnectError);
  }
  return ce;
}

async function* mapStreamErrors<T>(it: AsyncIterable<T>, fail: (e: unknown) => ConnectError): AsyncIterable<T> {
  try {
    yield* it;
  } catch (e) {
    throw fail(e);
  }
}
