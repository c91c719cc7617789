/**
 * RelayService.Relay over the Connect streaming protocol, served straight from the router
 * (issue 22, item 4). Through connect-node a relayed call cost ~5x the CPU of the same call on
 * the HTTP layer: every message passes about ten async-iterable layers (the adapter's, the
 * interceptors', the error mapping's), an AbortController is linked and aborted per call, and
 * protobuf-es encodes each chunk's bytes to base64 one character at a time. Here the call is
 * the same `relayCall` (relay-service.ts) as there, and each message is written to the
 * response as a Connect envelope as it comes, behind the same front door (rpc-gate.ts).
 *
 * Taken only when (`eligible`), each because connect-node would do something else otherwise:
 * - `POST` to the method's path with `Content-Type` `application/connect+json` or
 *   `application/connect+proto` (gRPC and gRPC-Web have their own framing);
 * - no `Content-Encoding` and no `Connect-Content-Encoding` (or `identity`): a compressed
 *   request message is connect-node's to decompress;
 * - no `Connect-Timeout-Ms`: a deadline is connect-node's to enforce;
 * - `Content-Length` absent or plain digits, and a host (as for the unary lane).
 * `Connect-Accept-Encoding` is honoured as connect-node honours it (gzip or br for messages
 * from 1 KiB, `Connect-Content-Encoding` on the answer).
 *
 * The answer is what connect-node sends: HTTP 200, then the messages, then the end-of-stream
 * message (`{}`, or `{"error":...}` mapped by the one error mapping, errors.ts). A request body
 * that is not one well-formed envelope is refused with `invalid_argument` in the end-of-stream
 * message (connect-node's own wording may differ, not its code). In JSON the head, chunks and
 * end are written straight from the call's parts (src/services/relay-message-json.ts: the bytes
 * protobuf-es would write); binary messages and text chunks go through connect's serialization
 * of the method.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionNegotiate, createMethodSerializationLookup, validateReadWriteMaxBytes, type Compression } from "@connectrpc/connect/protocol";
import { endStreamFlag, endStreamToJson } from "@connectrpc/connect/protocol-connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { Counter } from "prom-client";
import { RelayService } from "../../gen/relayapi/v1/relay_service_pb.js";
import { ClientAbort } from "../http/client-abort.js";
import { drained } from "../http/http-sink.js";
import type { AnyResponse } from "../http/render-error.js";
import { requestIdOf } from "../http/request-id.js";
import { answerOf } from "../observe/answer-counter.js";
import type { RelayEngine } from "../relay/engine.js";
import { ACCEPT_COMPRESSION } from "./compression.js";
import { mapFailure } from "./errors.js";
import { envelope } from "./parse-errors.js";
import { partJson } from "./relay-message-json.js";
import { RELAY_PATH, type RelayPart, relayCall, relayMessage } from "./relay-service.js";
import { createRpcGate } from "./rpc-gate.js";
import { type FastLaneDeps, isGone, readMessage } from "./unary-fast-lane.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;

export interface RelayFastLaneDeps extends FastLaneDeps {
  engine: RelayEngine;
}

/** True when the call was taken (it is answered); false: hand it to the Connect routes. */
export type RelayFastLane = (req: AnyRequest, res: AnyResponse, pathname: string) => boolean;

const METHOD_NAME = `${RelayService.typeName}/Relay`;
const JSON_TYPE = "application/connect+json";
const PROTO_TYPE = "application/connect+proto";
const DIGITS = /^\d+$/;
/** connect-es's request-decoding failure. */
const PARSE_BINARY = /^parse binary:/;
const COMPRESSED_FLAG = 0b00000001;

export function createRelayFastLane(deps: RelayFastLaneDeps): RelayFastLane {
  const { engine, log, maxBodyBytes } = deps;
  const gate = createRpcGate({ ...deps, adminOnly: new Set(), readsByEvents: true });
  const io = validateReadWriteMaxBytes(maxBodyBytes, undefined, undefined);
  const serialization = createMethodSerializationLookup(RelayService.method.relay, undefined, undefined, io);
  let taken = 0;
  new Counter({
    name: "relayapi_rpc_relay_fast_lane_total",
    help: "RelayService.Relay calls over Connect answered by the fast lane (src/services/relay-fast-lane.ts) instead of connect-node.",
    registers: [deps.registry],
    collect() {
      this.reset();
      this.inc(taken);
    },
  });

  const serve = async (req: AnyRequest, res: AnyResponse, binary: boolean, compression: Compression | null): Promise<void> => {
    const admitting = gate.admit(req, res, RELAY_PATH);
    if (!(admitting instanceof Promise ? await admitting : admitting)) return;
    const requestId = requestIdOf(req.headers["x-request-id"]);
    const answer = answerOf(req);
    if (answer !== undefined) answer.requestId = requestId;
    const out = new EnvelopeWriter(res, binary ? PROTO_TYPE : JSON_TYPE, requestId, compression, io.compressMinBytes);
    const gone = new ClientAbort();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    const encodeO = serialization.getO(binary);
    const emit = (part: RelayPart): void | Promise<void> => {
      // JSON written straight from the part (src/services/relay-message-json.ts); binary by
      // protobuf-es. The head waits for the first chunk, so both go out in one write (below).
      const data = binary ? encodeO.serialize(relayMessage(part)) : partJson(part);
      if (part.case === "head") return out.head(data);
      // The end message goes with the end of the stream, which always follows it (serve).
      if (part.case === "end") return out.beforeEnd(data);
      // A chunk the client can no longer take fails, so the engine stops reading the answer.
      return out.message(data);
    };
    let error: ConnectError | undefined;
    try {
      const request = serialization.getI(binary).parse(envelopedMessage(await readMessage(req, maxBodyBytes + 5)));
      await relayCall(engine, request, { headers: req.headers, signal: gone, requestId }, emit);
    } catch (e) {
      // The error interceptor's mapping, noted on the Answer (counted by reason, 5xx logged once).
      error = mapFailure(e, log, METHOD_NAME, answer);
      // A request message that is not protobuf binary: invalid_argument, as parse-errors.ts makes it.
      if (error.code === Code.Internal && PARSE_BINARY.test(error.rawMessage)) error = new ConnectError(error.rawMessage, Code.InvalidArgument);
    }
    const ended = out.end(error);
    if (ended !== undefined) await ended;
  };

  return (req, res, pathname) => {
    if (pathname !== RELAY_PATH || req.method !== "POST") return false;
    const h = req.headers;
    const type = h["content-type"];
    let binary: boolean;
    if (type === JSON_TYPE) binary = false;
    else if (type === PROTO_TYPE) binary = true;
    else return false;
    const encoding = h["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const messageEncoding = h["connect-content-encoding"];
    if (messageEncoding !== undefined && messageEncoding !== "identity") return false;
    if (h["connect-timeout-ms"] !== undefined) return false;
    const length = h["content-length"];
    if (length !== undefined && !DIGITS.test(length)) return false;
    if (("authority" in req ? req.authority : h.host) === undefined) return false;
    const accepted = h["connect-accept-encoding"];
    const compression =
      typeof accepted === "string" && accepted !== "" ? compressionNegotiate(ACCEPT_COMPRESSION, null, accepted, "connect-accept-encoding").response : null;
    taken++;
    serve(req, res, binary, compression).catch((e: unknown) => {
      log.error("relay fast lane failed", { err: e });
      res.destroy();
    });
    return true;
  };
}

/** The one enveloped message of a server-streaming request, as connect-node reads it. */
function envelopedMessage(body: Uint8Array): Uint8Array {
  if (body.byteLength < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const flags = body[0]!;
  const size = ((body[1]! << 24) | (body[2]! << 16) | (body[3]! << 8) | body[4]!) >>> 0;
  if (body.byteLength !== 5 + size) throw new ConnectError("protocol error: expected exactly one message", Code.InvalidArgument);
  if ((flags & COMPRESSED_FLAG) !== 0) throw new ConnectError("protocol error: received compressed message without compression", Code.InvalidArgument);
  if (flags !== 0) throw new ConnectError("protocol error: unexpected end of stream", Code.InvalidArgument);
  return body.subarray(5);
}

/**
 * Writes Connect envelopes into the response: the headers with the first, each message as it
 * comes (a promise while the client is slow: the engine then waits before reading on). A
 * message is a JSON text or protobuf bytes. The head message is held until the next message,
 * or the end of the current tick if none comes before, and the end message until the end of
 * the stream: an answer that arrived whole then goes out as two chunks of the HTTP/1.1 body
 * instead of four (~15% of the lane's CPU per call with the parts written straight to JSON).
 */
class EnvelopeWriter {
  #started = false;
  /** With compression, messages are written in order through this chain (compressing is asynchronous). */
  #tail: Promise<void> | undefined;
  /** The head message's envelope, and after it the end message's, not written yet. */
  #held: Uint8Array | undefined;

  constructor(
    private readonly res: AnyResponse,
    private readonly contentType: string,
    private readonly requestId: string,
    private readonly compression: Compression | null,
    private readonly compressMinBytes: number,
  ) {}

  /** The head message. Never fails (the engine's sink calls must not throw): a client gone by then only loses it. */
  head(data: string | Uint8Array): void {
    if (this.compression !== null) return this.#unawaited(data);
    this.#held = framed(0, data);
    process.nextTick(releaseHeld, this);
  }

  /**
   * The last message before `end`: written with the end of the stream. Never fails (the
   * engine's sink calls must not throw): a client gone by then only loses it.
   */
  beforeEnd(data: string | Uint8Array): void {
    if (this.compression !== null) return this.#unawaited(data);
    this.#held = this.#afterHeld(framed(0, data));
  }

  /**
   * A message nothing awaits, with compression: it is written asynchronously, and a client gone
   * by then rejects it, which unhandled would end the process. The client only loses it.
   */
  #unawaited(data: string | Uint8Array): void {
    this.message(data)?.catch(() => {});
  }

  /** `message` after what is held, which is then no longer held. */
  #afterHeld(message: Uint8Array): Uint8Array {
    const held = this.#held;
    this.#held = undefined;
    return held === undefined ? message : Buffer.concat([held, message]);
  }

  /** Writes the held head on its own (no message followed it in its turn of the event loop). */
  releaseHeld(): void {
    const held = this.#held;
    if (held === undefined || isGone(this.res)) return;
    this.#held = undefined;
    this.#head();
    (this.res as { write(c: Uint8Array): boolean }).write(held);
  }

  message(data: string | Uint8Array): void | Promise<void> {
    const compression = this.compression;
    if (compression === null) return this.#write(framed(0, data));
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const packed = bytes.byteLength >= this.compressMinBytes ? compression.compress(bytes) : undefined;
    this.#tail = (this.#tail ?? Promise.resolve()).then(async () =>
      this.#write(packed === undefined ? envelope(0, bytes) : envelope(COMPRESSED_FLAG, await packed)),
    );
    return this.#tail;
  }

  /** The end-of-stream message, with the error if the call failed; then the response ends. */
  end(error: ConnectError | undefined): void | Promise<void> {
    // Waits only for a compressed message still being written, or to compress this one:
    // otherwise the end goes out at once, with no promise (issue 22).
    const tail = this.#tail;
    if (tail !== undefined) return tail.catch(() => {}).then(() => this.#endWith(error));
    return this.#endWith(error);
  }

  #endWith(error: ConnectError | undefined): void | Promise<void> {
    // No trailers of its own: endStreamToJson adds the error's metadata to them, so passing that
    // metadata as the trailers sent every value twice (`retry-after: 60, 60`, NaN to a client).
    const data: Uint8Array = error === undefined ? EMPTY_END : Buffer.from(JSON.stringify(endStreamToJson(new Headers(), error, undefined)));
    if (this.compression !== null && data.byteLength >= this.compressMinBytes) {
      return this.compression.compress(data).then((packed) => this.#endNow(packed, endStreamFlag | COMPRESSED_FLAG));
    }
    this.#endNow(data, endStreamFlag);
  }

  #endNow(data: Uint8Array, flags: number): void {
    if (isGone(this.res)) return;
    this.#head();
    this.res.end(this.#afterHeld(envelope(flags, data)));
  }

  #head(): void {
    if (this.#started) return;
    this.#started = true;
    // As connect-node writes them: from WHATWG Headers, in name order.
    const headers: Record<string, string> = {};
    if (this.compression !== null) headers["connect-content-encoding"] = this.compression.name;
    headers["content-type"] = this.contentType;
    headers["x-request-id"] = this.requestId;
    this.res.writeHead(200, headers);
  }

  #write(message: Uint8Array): void | Promise<void> {
    const res = this.res;
    if (isGone(res)) throw new Error("client went away");
    this.#head();
    if ((res as { write(c: Uint8Array): boolean }).write(this.#afterHeld(message))) return;
    return drained(res);
  }
}

/** The end-of-stream message of a call that succeeded, with no trailers: `{}`. */
const EMPTY_END = Buffer.from("{}");

function releaseHeld(writer: EnvelopeWriter): void {
  writer.releaseHeld();
}

/** A message as a Connect envelope: a JSON text is encoded straight into it. */
function framed(flags: number, data: string | Uint8Array): Uint8Array {
  if (typeof data !== "string") return envelope(flags, data);
  const size = Buffer.byteLength(data);
  const out = Buffer.allocUnsafe(5 + size);
  out[0] = flags;
  out.writeUInt32BE(size, 1);
  out.write(data, 5);
  return out;
}
