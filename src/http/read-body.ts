/** Reads a request body into one buffer, refusing (413) past a byte limit without buffering it. */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { RelayError } from "../errors.js";

const EMPTY = Buffer.alloc(0);

export async function readBody(req: IncomingMessage | Http2ServerRequest, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) throw new RelayError("payload_too_large", "request body too large");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new RelayError("payload_too_large", "request body too large");
    chunks.push(chunk);
  }
  if (chunks.length === 0) return EMPTY;
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}
