/**
 * Renders a RelayError on the HTTP layer, in the API shape of the provider the path names, and
 * notes it on the request's Answer (src/observe/answer-counter.ts) so the answer is counted by
 * its reason. Every 503 the relay gives carries `Retry-After` (issue 19.6): a load balancer or
 * an SDK then backs off instead of retrying at once into the same outage.
 *
 * Codes no retry can cure (an exhausted, expired or revoked token) carry `x-should-retry: false`
 * (issue 21.8a): the official SDKs otherwise retry any 429 twice, tripling the calls on a token
 * that will never answer again. A `rate_limited` 429 keeps `Retry-After` and no such header.
 */
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { isFinal, retryAfterOf, UNAVAILABLE_RETRY_AFTER_S, type RelayError } from "../errors.js";
import { answerOf, noteFailure } from "../observe/answer-counter.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { ApiShape } from "../providers/types.js";

// Decided with the error (src/errors.ts); re-exported for the HTTP layer's callers.
export { isFinal, retryAfterOf, UNAVAILABLE_RETRY_AFTER_S };

export type AnyResponse = ServerResponse | Http2ServerResponse;

/** What renders an error body: a provider's API shape, or the relay's own (below). */
export type ErrorBodyShape = Pick<ApiShape, "errorBody">;

/**
 * The body of the relay's own routes' errors (the console, /metrics, an unknown path): the
 * OpenAI error fields without the provider's `param`, as no provider's API was addressed.
 */
export const relayErrorShape: ErrorBodyShape = {
  errorBody: (err) => JSON.stringify({ error: { message: err.message, type: err.status >= 500 ? "server_error" : "invalid_request_error", code: err.code } }),
};

export function sendError(res: AnyResponse, err: RelayError, shape: ErrorBodyShape = openaiShape, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  noteFailure(answerOf(res), err);
  const body = shape.errorBody(err);
  const headers: Record<string, string | number> = {
    ...extraHeaders,
    ...err.headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  };
  const retryAfter = retryAfterOf(err);
  if (retryAfter !== undefined) headers["retry-after"] = String(retryAfter);
  if (isFinal(err)) headers["x-should-retry"] = "false";
  res.writeHead(err.status, headers);
  res.end(body);
}

export function sendJson(res: AnyResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  };
  // /readyz's "not ready": probes ignore it, a client that reached the path by mistake backs off.
  if (status === 503) headers["retry-after"] = String(UNAVAILABLE_RETRY_AFTER_S);
  res.writeHead(status, headers);
  res.end(body);
}
