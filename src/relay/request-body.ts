/**
 * Makes a request body readable by the policy before anything reads it (DESIGN 3.4, issue 17
 * finding 3). The engine calls decodeRequestBody once, for both entry points, right after the
 * token was checked; the policy then classifies the result with bodyKind.
 *
 * The rule is that the provider reads exactly what the policy read:
 * - a `Content-Encoding` (gzip, x-gzip, deflate, br) is decoded within the body limit, and the
 *   decoded bytes are what goes upstream (src/relay/headers.ts never forwards the header);
 *   an encoding the relay cannot decode is refused (415), never passed on unread;
 * - a leading UTF-8 byte-order mark in front of JSON is stripped: Python's `json.loads(bytes)`,
 *   Jackson and System.Text.Json skip it, the scanner (JSON.parse's grammar) would not;
 * - JSON in UTF-16 or UTF-32 (RFC 8259 8.1 forbids it; RFC 4627 3 tells it by its NULs, and
 *   Jackson reads it) is told apart so the policy can refuse it.
 */
import { constants } from "node:buffer";
import { promisify } from "node:util";
import { brotliDecompress, gunzip, inflate, inflateRaw, type ZlibOptions, type BrotliOptions } from "node:zlib";
import { RelayError } from "../errors.js";
import type { HeaderInput } from "./headers.js";

type Decoder = (body: Buffer, opts: ZlibOptions & BrotliOptions) => Promise<Buffer>;

const gunzipAsync = promisify(gunzip) as Decoder;
const inflateAsync = promisify(inflate) as Decoder;
const inflateRawAsync = promisify(inflateRaw) as Decoder;
const brotliAsync = promisify(brotliDecompress) as Decoder;

/**
 * The content codings the relay decodes. `deflate` is the zlib format (RFC 9110 8.4.1.2), but
 * clients have long sent raw deflate under that name, so both are read.
 */
const DECODERS = new Map<string, Decoder>([
  ["gzip", gunzipAsync],
  ["x-gzip", gunzipAsync],
  ["deflate", (body, opts) => (hasZlibHeader(body) ? inflateAsync(body, opts) : inflateRawAsync(body, opts))],
  ["br", brotliAsync],
]);

const unsupported = (what: string): RelayError => new RelayError("unsupported_media_type", `request body: ${what}`);

/** A zlib stream header (RFC 1950 2.2): method 8, window at most 32 KiB, check bits. */
function hasZlibHeader(b: Buffer): boolean {
  return b.length >= 2 && (b[0]! & 0x0f) === 8 && b[0]! >> 4 <= 7 && ((b[0]! << 8) | b[1]!) % 31 === 0;
}

/** The codings a header lists, lower-cased, `identity` left out (RFC 9110 8.4). */
function codingsOf(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value.join(",") : value;
  return list
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
}

/**
 * The body as the policy must read it and the provider will get it: decoded from its content
 * coding (at most `maxBytes` decoded bytes, so a compression bomb is refused with 413 once it
 * passes the limit, not after), without a UTF-8 byte-order mark in front of JSON.
 */
export function decodeRequestBody(body: Buffer, headers: HeaderInput, maxBytes: number): Buffer | Promise<Buffer> {
  // Most bodies name no coding: answered at once, with no promise (issue 22). Refusals are promises.
  if (headers["transfer-encoding"] === undefined && headers["content-encoding"] === undefined) return stripUtf8Bom(body);
  return decodeCoded(body, headers, maxBytes);
}

async function decodeCoded(body: Buffer, headers: HeaderInput, maxBytes: number): Promise<Buffer> {
  // Node de-chunks a body but leaves any other transfer coding (`gzip, chunked`) in place.
  if (codingsOf(headers["transfer-encoding"]).some((c) => c !== "chunked")) throw unsupported("transfer coding not supported");
  const codings = codingsOf(headers["content-encoding"]);
  if (codings.length > 1) throw unsupported("stacked content encodings are not supported");
  if (codings.length === 1) {
    const decode = DECODERS.get(codings[0]!);
    if (decode === undefined) throw unsupported("content encoding not supported (use gzip, deflate or br)");
    // An empty body needs no decoding (zlib would call it truncated).
    if (body.length > 0) body = await decodeBounded(decode, body, maxBytes);
  }
  return stripUtf8Bom(body);
}

async function decodeBounded(decode: Decoder, body: Buffer, maxBytes: number): Promise<Buffer> {
  try {
    // The async forms run on the thread pool; maxOutputLength stops them at the limit.
    return await decode(body, { maxOutputLength: Math.max(1, Math.min(maxBytes, constants.MAX_LENGTH)) });
  } catch (e) {
    if ((e as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new RelayError("payload_too_large", "request body too large once decoded", { cause: e });
    }
    throw new RelayError("bad_request", "request body: content encoding does not match its bytes", { cause: e });
  }
}

const BOM = [0xef, 0xbb, 0xbf] as const;

function hasUtf8Bom(b: Buffer, at = 0): boolean {
  return b[at] === BOM[0] && b[at + 1] === BOM[1] && b[at + 2] === BOM[2];
}

/** Drops one UTF-8 BOM when JSON follows it; other bodies (a text upload) keep their bytes. */
export function stripUtf8Bom(body: Buffer): Buffer {
  return hasUtf8Bom(body) && firstSignificant(body, 3) === 0x7b ? body.subarray(3) : body;
}

/**
 * What the policy makes of a (decoded) body:
 * - `json`: its first significant byte is `{` (see firstSignificant); the policy scans it,
 *   whatever the content type says, and refuses it unless it is strict UTF-8 JSON;
 * - `wide-json`: JSON in UTF-16 or UTF-32, which the scanner cannot read;
 * - `other`: no body, or one that is not a JSON object (an upload, audio).
 */
export type BodyKind = "json" | "wide-json" | "other";

export function bodyKind(body: Buffer): BodyKind {
  if (body.length === 0) return "other";
  // Wide first: UTF-16LE JSON starts with `{` too, then a NUL.
  if (isWideJson(body)) return "wide-json";
  return firstSignificant(body, 0) === 0x7b ? "json" : "other";
}

/**
 * The first byte after anything some JSON reader might take for blank space: JSON's own four,
 * and also vertical tab, form feed, byte-order marks and Unicode spaces (JSON5 and lenient
 * readers skip these). A body that starts `\f{` is then called JSON and refused by the strict
 * scan, rather than passed on as "not JSON" to a reader that would see an object.
 */
function firstSignificant(b: Buffer, i: number): number {
  for (let guard = 0; i < b.length && guard < 4096; guard++) {
    const n = blankLength(b, i);
    if (n === 0) return b[i]!;
    i += n;
  }
  return -1;
}

/** Length of the blank character at i in UTF-8 (see firstSignificant), 0 when it is none. */
function blankLength(b: Buffer, i: number): number {
  const c = b[i]!,
    c1 = b[i + 1],
    c2 = b[i + 2] ?? -1;
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) return 1;
  if (c === 0xc2) return c1 === 0xa0 || c1 === 0x85 ? 2 : 0; // NBSP, NEL
  if (c === 0xef) return c1 === 0xbb && c2 === 0xbf ? 3 : 0; // U+FEFF
  if (c === 0xe1) return c1 === 0x9a && c2 === 0x80 ? 3 : 0; // U+1680
  if (c === 0xe3) return c1 === 0x80 && c2 === 0x80 ? 3 : 0; // U+3000
  if (c !== 0xe2) return 0;
  if (c1 === 0x81) return c2 === 0x9f ? 3 : 0; // U+205F
  // U+2000-200A, U+2028, U+2029, U+202F
  return c1 === 0x80 && ((c2 >= 0x80 && c2 <= 0x8a) || c2 === 0xa8 || c2 === 0xa9 || c2 === 0xaf) ? 3 : 0;
}

/** A code unit reader for one of the wide encodings. */
interface Wide {
  size: 2 | 4;
  big: boolean;
  /** Where the text starts (past a BOM). */
  start: number;
}

/**
 * UTF-16/UTF-32 by their BOM, or by the NUL pattern of the first two characters (RFC 4627 3;
 * a JSON text starts with two ASCII characters). Only JSON counts: the first non-blank
 * character must open an object or array, so binary audio with NULs in front is not taken
 * for it.
 */
function isWideJson(b: Buffer): boolean {
  const wide = wideEncodingOf(b);
  if (wide === undefined) return false;
  const { size, big } = wide;
  for (let i = wide.start; i + size <= b.length && i < wide.start + 256 * size; i += size) {
    const unit = size === 2 ? (big ? b.readUInt16BE(i) : b.readUInt16LE(i)) : big ? b.readUInt32BE(i) : b.readUInt32LE(i);
    if (unit === 0x20 || unit === 0x09 || unit === 0x0a || unit === 0x0d || unit === 0xfeff) continue;
    return unit === 0x7b || unit === 0x5b;
  }
  return false;
}

function wideEncodingOf(b: Buffer): Wide | undefined {
  if (b.length < 2) return undefined;
  const [b0, b1, b2, b3] = [b[0]!, b[1]!, b[2] ?? -1, b[3] ?? -1];
  if (b0 === 0 && b1 === 0 && b2 === 0xfe && b3 === 0xff) return { size: 4, big: true, start: 4 };
  if (b0 === 0xff && b1 === 0xfe && b2 === 0 && b3 === 0) return { size: 4, big: false, start: 4 };
  if (b0 === 0xfe && b1 === 0xff) return { size: 2, big: true, start: 2 };
  if (b0 === 0xff && b1 === 0xfe) return { size: 2, big: false, start: 2 };
  if (b0 === 0 && b1 === 0 && b2 === 0 && b3 > 0) return { size: 4, big: true, start: 0 };
  if (b0 > 0 && b1 === 0 && b2 === 0 && b3 === 0) return { size: 4, big: false, start: 0 };
  if (b0 === 0 && b1 > 0) return { size: 2, big: true, start: 0 };
  if (b0 > 0 && b1 === 0) return { size: 2, big: false, start: 0 };
  return undefined;
}
