/** Renders a RelayError on the HTTP layer, in the API shape of the provider the path names. */
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import type { RelayError } from "../errors.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { ApiShape } from "../providers/types.js";

export type AnyResponse = ServerResponse | Http2ServerResponse;

export function sendError(res: AnyResponse, err: RelayError, shape: ApiShape = openaiShape, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = shape.errorBody(err);
  const headers: Record<string, string | number> = {
    ...extraHeaders,
    ...err.headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  };
  if (err.retryAfter !== undefined) headers["retry-after"] = String(err.retryAfter);
  res.writeHead(err.status, headers);
  res.end(body);
}

export function sendJson(res: AnyResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
  res.end(body);
}
