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
  rate_limited: Code.ResourceExhausted,
  calls_exhausted: Code.ResourceExhausted,
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
    return new ConnectError(e.message, CODE[e.code], meta);
  }
  log?.error("rpc failed", { err: e });
  return new ConnectError("internal error", Code.Internal);
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
