/**
 * Request bodies: read into one buffer within a byte limit (413 past it, without buffering the
 * rest) and within the global body budget (503 past it), opened as an upload that streams
 * through (issue 25), or let go unread after an early answer without leaving the client's
 * connection stuck.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { RelayError } from "../errors.js";
import { UPLOAD_HEAD_BYTES, UploadBody, type UploadKind } from "../relay/upload-body.js";
import type { BodyAccount } from "./body-budget.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;

const EMPTY = Buffer.alloc(0);

const tooLarge = (): RelayError => new RelayError("payload_too_large", "request body too large");

/** The declared length, when it is a plain number. */
export function declaredLength(req: AnyRequest): number | undefined {
  const v = req.headers["content-length"];
  if (typeof v !== "string" || !/^\d{1,15}$/.test(v)) return undefined;
  return Number(v);
}

/**
 * Reads the body. Its bytes are taken from `account` chunk by chunk, as they arrive; the caller
 * gives them back when the request ends. A declared length is not taken at once: the budget
 * would then be held by bodies their clients never send (test/probe-input-budget.test.ts).
 */
export function readBody(req: AnyRequest, limit: number, account?: BodyAccount): Promise<Buffer> {
  const declared = declaredLength(req);
  // Refused before a byte is read; the caller lets the body go once it has answered.
  if (declared !== undefined && declared > limit) return Promise.reject(tooLarge());
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const refuse = (err: RelayError): void => {
      req.off("data", onData);
      // Discard the rest instead of destroying the request: a request destroyed mid-body leaves
      // an HTTP/1.1 keep-alive connection stuck, and the client's next request on it hangs.
      discardUnread(req, limit);
      settled = true;
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) return refuse(tooLarge());
      if (account !== undefined) {
        try {
          account.take(chunk.length);
        } catch (e) {
          return refuse(e as RelayError);
        }
      }
      chunks.push(chunk);
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

/** Bytes of an unwanted body read and dropped before its connection is closed instead. */
const DISCARD_MIN_BYTES = 64 * 1024 * 1024;
const discarding = new WeakSet<AnyRequest>();
const ignore = (): void => {};

/**
 * Lets the unread rest of a body go, once the answer no longer depends on it (called after an
 * early answer: 401, 405, 413, 429, 503). On HTTP/1.1 the rest must be read off the socket for
 * the keep-alive connection to carry the next request; closing instead while the client is
 * still sending makes the kernel reset the connection, which can destroy the answer before the
 * client read it. The bytes are dropped as they come (nothing is held). Past the body limit or
 * DISCARD_MIN_BYTES, whichever is more, the client is not worth waiting for: the request (its
 * connection on HTTP/1.1, its stream on h2) is destroyed. Safe to call more than once, and on a
 * body already read.
 */
export function discardUnread(req: AnyRequest, limit: number): void {
  if (req.complete || req.readableEnded || req.destroyed || discarding.has(req)) return;
  discarding.add(req);
  const most = Math.max(limit, DISCARD_MIN_BYTES);
  let seen = 0;
  req.on("error", ignore);
  req.on("data", (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > most) req.destroy();
  });
  req.resume();
}

/**
 * Opens the body as an upload that streams through (issue 25) instead of reading it: only its
 * head is ever held, so only that much is taken from `account`. The limit is the engine's to
 * apply (the token's and the provider-wide upload limit), as the bytes go.
 */
export function openUpload(req: AnyRequest, kind: UploadKind, account?: BodyAccount): UploadBody {
  account?.take(UPLOAD_HEAD_BYTES);
  const type = req.headers["content-type"];
  return new UploadBody(req, declaredLength(req), kind, typeof type === "string" ? type : "");
}
