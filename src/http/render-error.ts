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
import type { RelayError } from "../errors.js";
import { answerOf, noteFailure } from "../observe/answer-counter.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { ApiShape } from "../providers/types.js";

export type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Seconds a 503 asks for when its error names none: a database outage or no upstream key free
 * are not over in a second, and a client that waits this long costs nothing when they are.
 */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

/** `Retry-After` seconds for `err`: its own, else the default for a 503. */
export function retryAfterOf(err: RelayError): number | undefined {
  return err.retryAfter ?? (err.status === 503 ? UNAVAILABLE_RETRY_AFTER_S : undefined);
}

/** Codes whose answer will not change on retry, whatever the client waits. */
const FINAL_CODES: ReadonlySet<RelayError["code"]> = new Set(["calls_exhausted", "budget_exhausted", "unauthenticated"]);

/**
 * Whether `err`'s answer tells SDKs not to retry (`x-should-retry: false`). A 401 carrying a
 * challenge (`WWW-Authenticate`: DPoP, with a fresh nonce) invites a retry with a new proof.
 */
export function isFinal(err: RelayError): boolean {
  return FINAL_CODES.has(err.code) && err.headers?.["www-authenticate"] === undefined;
}

export function sendError(res: AnyResponse, err: RelayError, shape: ApiShape = openaiShape, extraHeaders: Record<string, string> = {}): void {
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
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body), "cache-control": "no-store" };
  // /readyz's "not ready": probes ignore it, a client that reached the path by mistake backs off.
  if (status === 503) headers["retry-after"] = String(UNAVAILABLE_RETRY_AFTER_S);
  res.writeHead(status, headers);
  res.end(body);
}
