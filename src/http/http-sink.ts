/**
 * Streams a relayed answer into an HTTP response: headers at once, every chunk written as it
 * arrives (no buffering; sockets have Nagle off), backpressure honoured. A stream the upstream
 * broke ends with an explicit SSE `error` event, or an aborted connection for other bodies,
 * never a silent clean end; so does a stream still open at shutdown's grace deadline (its event
 * says the relay is shutting down, a 503-class error: the client may retry elsewhere).
 */
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { RelayError } from "../errors.js";
import type { ApiShape } from "../providers/types.js";
import { RELAY_SHUTTING_DOWN, type RelayEnd, type RelaySink } from "../relay/engine.js";
import type { AnyResponse } from "./render-error.js";

export class HttpSink implements RelaySink {
  #sse = false;
  /** Body bytes (or the end) handed to the response: its headers went with them. */
  #written = false;

  constructor(
    private readonly res: AnyResponse,
    private readonly extraHeaders: Record<string, string>,
    private readonly shape: ApiShape,
  ) {}

  head(status: number, headers: Record<string, string | string[]>, bodyLength?: number): void {
    const ct = headers["content-type"];
    this.#sse = typeof ct === "string" && ct.includes("text/event-stream");
    // Copied key by key, never `{ ...headers, ...extra }`: V8 makes that spread of header names
    // a dictionary-mode object, ~5 µs to build and slower for writeHead to walk (issue 22).
    const merged: Record<string, string | string[]> = {};
    for (const name in headers) merged[name] = headers[name]!;
    // The provider's own x-request-id passes through untouched (its SDKs and support use it);
    // the relay's id then moves to x-relay-request-id.
    const upstreamId = headers["x-request-id"];
    const extra = this.extraHeaders;
    for (const name in extra) {
      if (name === "x-request-id" && upstreamId !== undefined) merged["x-relay-request-id"] = extra[name]!;
      else merged[name] = extra[name]!;
    }
    // A known length spares chunked framing and the separate write of its last chunk; a body
    // that breaks off short of it is cut (end() destroys), so the client never takes it as whole.
    if (bodyLength !== undefined && !this.#sse) merged["content-length"] = String(bodyLength);
    this.res.writeHead(status, merged);
    // HTTP/2 sends headers on writeHead. HTTP/1.1 holds them until the first write, which is
    // what we want when the first chunk came with the provider's headers (one packet, one
    // read for the client); an event stream whose first event is slow must still start at
    // once, so the headers go out on their own after this turn of the event loop.
    if (this.#sse && "flushHeaders" in this.res) setImmediate(flushHeadersOf, this);
  }

  /** The headers of an event stream whose first chunk has not come yet go out alone. */
  flushHeadersIfUnwritten(): void {
    const res = this.res;
    if (!this.#written && !res.destroyed && "flushHeaders" in res) res.flushHeaders();
  }

  write(chunk: Buffer): void | Promise<void> {
    const res = this.res;
    if (res.destroyed) throw new Error("client went away");
    this.#written = true;
    if ((res as { write(c: Buffer): boolean }).write(chunk)) return;
    return drained(res);
  }

  end(end: RelayEnd): void {
    const res = this.res;
    this.#written = true;
    if (res.destroyed) return;
    if (end.outcome !== Outcome.TRUNCATED) {
      res.end();
      return;
    }
    if (this.#sse) {
      const error =
        end.error === RELAY_SHUTTING_DOWN
          ? new RelayError("unavailable", RELAY_SHUTTING_DOWN)
          : new RelayError("upstream_unreachable", end.error ?? "stream interrupted");
      const body = this.shape.errorBody(error);
      res.end(`event: error\ndata: ${body}\n\n`);
      return;
    }
    // A JSON body cut in the middle: abort the connection so the client cannot take it as whole.
    res.destroy();
  }
}

/** Resolves when a response that refused a write can take more, or has closed. */
export function drained(res: AnyResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

function flushHeadersOf(sink: HttpSink): void {
  sink.flushHeadersIfUnwritten();
}
