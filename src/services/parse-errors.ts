/**
 * connect-es answers a request message that is not valid protobuf binary ("parse binary: ..."),
 * a request body its brotli decoder refuses ("decompression failed"), a compressed envelope
 * without an encoding header ("received compressed envelope, but do not know how to
 * decompress") and a Connect GET whose `base64=1` message is not base64 (a fixed "internal
 * error") with `internal`: an HTTP 500 on unary Connect, grpc-status 13 on gRPC and gRPC-Web,
 * as if the relay had failed. (Invalid JSON and bad gzip already get `invalid_argument`.) All
 * happen before any interceptor runs, so this wraps the router's handlers and rewrites exactly
 * those errors to `invalid_argument` in each protocol's own framing. Bad input is never a 5xx.
 * On gRPC it also writes every `grpc-message` in the spec's encoding (grpc-message.ts).
 */
import { base64Decode } from "@bufbuild/protobuf/wire";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { respecGrpcMessage } from "./grpc-message.js";

/** Messages of connect-es's request-decoding failures, as sent and URI-encoded (grpc-message). */
const DECODE_ERROR = /^(?:parse binary:|decompression failed$|received compressed envelope, but do not know how to decompress$)/;
const DECODE_ERROR_ENCODED =
  /^grpc-message:\s*(?:parse%20binary%3A|decompression%20failed\r?$|received%20compressed%20envelope%2C%20but%20do%20not%20know%20how%20to%20decompress\r?$)/im;
/** What a Connect GET's message that is not base64 is answered with (connect-es: a bare "internal error"). */
const BAD_BASE64 = "invalid base64 string";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function parseErrorsAsInvalidArgument(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    if (!res.body || res.header?.has("content-encoding")) return res;
    const type = res.header?.get("content-type") ?? "";
    if (res.status === 500 && type.startsWith("application/json")) return unary(res, res.body, req);
    if (res.status !== 200) return res;
    if (type.startsWith("application/connect+")) return { ...res, body: mapEnvelopes(res.body, 0x02, connectEnd) };
    if (type.startsWith("application/grpc-web")) return { ...res, body: mapEnvelopes(res.body, 0x80, grpcWebTrailer) };
    if (type.startsWith("application/grpc")) {
      fixGrpcStatus(res.header);
      respecGrpcMessage(res.header);
      return {
        ...res,
        body: afterLast(res.body, () => {
          fixGrpcStatus(res.trailer);
          respecGrpcMessage(res.trailer);
        }),
      };
    }
    return res;
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

interface ErrorJson {
  code?: unknown;
  message?: unknown;
}

const isParseError = (e: ErrorJson | undefined): boolean => e?.code === "internal" && typeof e.message === "string" && DECODE_ERROR.test(e.message);

async function unary(res: UniversalServerResponse, body: AsyncIterable<Uint8Array>, req: UniversalServerRequest): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const c of body) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  let error: ErrorJson | undefined;
  try {
    error = JSON.parse(bytes.toString("utf8")) as ErrorJson;
  } catch {
    // not a Connect error body: passed on as it is
  }
  if (error?.code === "internal" && badBase64Query(req)) error = { ...error, message: BAD_BASE64 };
  else if (!isParseError(error)) return { ...res, body: once(bytes) };
  const fixed = encoder.encode(JSON.stringify({ ...error, code: "invalid_argument" }));
  res.header?.set("content-length", String(fixed.byteLength));
  return { ...res, status: 400, body: once(fixed) };
}

/** A Connect GET whose message is said to be base64 (`base64=1`) and is not: connect-es's decoder throws. */
function badBase64Query(req: UniversalServerRequest): boolean {
  if (req.method !== "GET") return false;
  const query = new URL(req.url).searchParams;
  if (query.get("base64") !== "1") return false;
  try {
    base64Decode(query.get("message") ?? "");
    return false;
  } catch {
    return true;
  }
}

function connectEnd(data: Uint8Array): Uint8Array {
  let end: { error?: ErrorJson } | undefined;
  try {
    end = JSON.parse(decoder.decode(data)) as { error?: ErrorJson };
  } catch {
    return data;
  }
  return isParseError(end?.error) ? encoder.encode(JSON.stringify({ ...end, error: { ...end!.error, code: "invalid_argument" } })) : data;
}

function grpcWebTrailer(data: Uint8Array): Uint8Array {
  const text = decoder.decode(data);
  if (!/^grpc-status:\s*13\r?$/m.test(text) || !DECODE_ERROR_ENCODED.test(text)) return data;
  return encoder.encode(text.replace(/^grpc-status:\s*13/m, "grpc-status: 3"));
}

function fixGrpcStatus(h: Headers | undefined): void {
  if (h?.get("grpc-status") === "13" && DECODE_ERROR_ENCODED.test(`grpc-message: ${h.get("grpc-message") ?? ""}`)) h.set("grpc-status", "3");
}

/** Re-frames an enveloped stream, passing envelopes whose flags include `flag` (uncompressed) through `fix`. */
async function* mapEnvelopes(body: AsyncIterable<Uint8Array>, flag: number, fix: (data: Uint8Array) => Uint8Array): AsyncIterable<Uint8Array> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    pending = pending.length === 0 ? bytes : Buffer.concat([pending, bytes]);
    while (pending.length >= 5) {
      const size = pending.readUInt32BE(1);
      if (pending.length < 5 + size) break;
      const flags = pending[0]!;
      const frame = pending.subarray(0, 5 + size);
      pending = pending.subarray(5 + size);
      // Only the uncompressed end-of-stream / trailer envelope can carry the error.
      yield (flags & flag) === 0 || (flags & 0x01) !== 0 ? frame : envelope(flags, fix(frame.subarray(5)));
    }
  }
  if (pending.length > 0) yield pending;
}

/** One Connect / gRPC-Web envelope: the flags, the length (big-endian), the data. */
export function envelope(flags: number, data: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(5 + data.byteLength);
  out[0] = flags;
  out.writeUInt32BE(data.byteLength, 1);
  out.set(data, 5);
  return out;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function* afterLast(body: AsyncIterable<Uint8Array>, done: () => void): AsyncIterable<Uint8Array> {
  yield* body;
  done();
}
