/**
 * The RPC rendering of RelayError (its HTTP rendering is src/http/render-error.ts; the code,
 * Retry-After and the meaning of any thrown value are decided once, in src/errors.ts). An
 * interceptor maps every error a handler throws, unary or mid-stream, so no handler builds
 * its own; anything that is not a RelayError or ConnectError becomes a fixed "internal error",
 * logged once with the RPC's method. Each error is also noted on the RPC's Answer, so it is
 * counted by its reason and a 5xx gets its warn line (src/observe/answer-counter.ts).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { RelayError, retryAfterOf, toRelayError } from "../errors.js";
import type { Logger } from "../log.js";
import { kAnswer, noteFailure, type Answer } from "../observe/answer-counter.js";

/** `method` (`package.Service/Method`) names the RPC on the error line. */
export function toConnectError(e: unknown, log?: Logger, method?: string): ConnectError {
  if (e instanceof ConnectError) return e;
  // An h2c request body cut at requestTimeoutMs (src/one-port.ts, answered 408 there): the
  // client's doing, as a client that leaves mid-body; as an unforeseen error it was an error
  // line (and a counted internal failure) any client could write at will.
  if ((e as { code?: unknown } | null)?.code === "ERR_HTTP_REQUEST_TIMEOUT") return new ConnectError("request body not received in time", Code.Canceled);
  const err = toRelayError(e);
  if (err.code === "internal" && !(e instanceof RelayError)) log?.error("rpc failed", { method, err: e });
  const meta = new Headers();
  // Every unavailable answer says when to come back (issue 19.6), as on the HTTP layer.
  const retryAfter = retryAfterOf(err);
  if (retryAfter !== undefined) meta.set("retry-after", String(retryAfter));
  for (const [name, value] of Object.entries(err.headers ?? {})) meta.set(name, value);
  return new ConnectError(err.message, err.rpcCode, meta);
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
export function mapFailure(e: unknown, log: Logger, method: string, answer: Answer | undefined): ConnectError {
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
