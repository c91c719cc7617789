/**
 * The RPC rendering of RelayError (its HTTP rendering is src/http/render-error.ts). An
 * interceptor maps every error a handler throws, unary or mid-stream, so no handler builds
 * its own; anything that is not a RelayError or ConnectError becomes a fixed "internal error".
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { RelayError, type RelayErrorCode } from "../errors.js";
import type { Logger } from "../log.js";

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

export function toConnectError(e: unknown, log?: Logger): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof RelayError) {
    const meta = new Headers();
    if (e.retryAfter !== undefined) meta.set("retry-after", String(e.retryAfter));
    for (const [name, value] of Object.entries(e.headers ?? {})) meta.set(name, value);
    return new ConnectError(e.message, CODE[e.code], meta);
  }
  // SQLSTATE class 22 (data exception): a value the database cannot take, such as a NUL in
  // text or a number out of a column's range. It came from the request, not from a fault.
  if (/^22[0-9A-Z]{3}$/.test(sqlState(e) ?? "")) return new ConnectError("invalid argument", Code.InvalidArgument);
  log?.error("rpc failed", { err: e });
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
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapStreamErrors(res.message, log) };
    } catch (e) {
      throw toConnectError(e, log);
    }
  };
}

async function* mapStreamErrors<T>(it: AsyncIterable<T>, log: Logger): AsyncIterable<T> {
  try {
    yield* it;
  } catch (e) {
    throw toConnectError(e, log);
  }
}
