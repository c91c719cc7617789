/** Reads a request body into one buffer, refusing (413) past a byte limit without buffering it. */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { RelayError } from "../errors.js";

const EMPTY = Buffer.alloc(0);

const tooLarge = (): RelayError => new RelayError("payload_too_large", "request body too large");

export function readBody(req: IncomingMessage | Http2ServerRequest, limit: number): Promise<Buffer> {
  // Left unread, the body is discarded by Node once the response ends.
  if (Number(req.headers["content-length"]) > limit) return Promise.reject(tooLarge());
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off("data", onData);
      // Discard the rest instead of destroying the request: a request destroyed mid-body leaves
      // an HTTP/1.1 keep-alive connection stuck, and the client's next request on it hangs.
      req.resume();
      settled = true;
      reject(tooLarge());
    };
    // These stay attached (an `error` without a listener throws); `close` follows every `end`,
    // so the error is built only when the body really was cut short (not on the hot path).
    const onEnd = (): void => {
      settled = true;
      resolve(chunks.length === 0 ? EMPTY : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onGone = (cause?: unknown): void => {
      if (settled) return;
      settled = true;
      reject(new RelayError("bad_request", "request body incomplete", { cause }));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onGone);
    req.on("close", onGone);
  });
}
