/**
 * Reads a `multipart/form-data` body (RFC 7578) as it streams, without holding it (issue 25):
 * the text fields in front of the first file part, within a bound, for the request policy (a
 * model pin reads `model` there), and afterwards a watch on the header of every later part, so
 * a checked field sent behind a file (`model` again, after the policy read the first one) cuts
 * the upload before its closing delimiter reaches the provider. The bytes are never changed.
 *
 * Parsing is strict where a lenient reader could see another field than the relay: the body
 * starts with the delimiter (no preamble), part headers are bounded, and a field named with
 * `name*` or under a transfer encoding is refused rather than guessed at.
 */
import { isUtf8 } from "node:buffer";
import { RelayError } from "../errors.js";

/** Longest header block of one part. */
const MAX_PART_HEADERS = 8 * 1024;
const CRLF = Buffer.from("\r\n");
const HEADERS_END = Buffer.from("\r\n\r\n");
const EMPTY = Buffer.alloc(0);

export const malformed = (what = "malformed"): RelayError => new RelayError("bad_request", `multipart body: ${what}`);

/** The `boundary` of a `multipart/form-data` content type (RFC 2046 5.1.1), or a 400. */
export function boundaryOf(contentType: string): string {
  const params = contentType
    .split(";")
    .slice(1)
    .map((p) => p.trim());
  const found = params.filter((p) => /^boundary\s*=/i.test(p));
  if (found.length !== 1) throw malformed("one boundary parameter expected");
  let value = found[0]!.slice(found[0]!.indexOf("=") + 1).trim();
  if (value.startsWith('"')) {
    if (!value.endsWith('"') || value.length < 2) throw malformed("bad boundary");
    value = value.slice(1, -1);
  }
  // bchars, 1-70 of them, not ending in a space (RFC 2046 5.1.1).
  if (!/^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/.test(value)) throw malformed("bad boundary");
  return value;
}

/** One part's header as far as the policy cares. */
export interface PartHead {
  /** The field name, as sent. */
  name: string;
  /** A file part: its disposition has a `filename`. */
  file: boolean;
}

export interface Field {
  name: string;
  /** The value's bytes (UTF-8 text when the policy reads it). */
  value: Buffer;
}

/** What the leading text fields of a body are, once their end is known. */
export interface Leading {
  fields: Field[];
  /** Why reading stopped: a file part's header, the closing delimiter, or the bound. */
  stop: "file" | "end" | "bound";
}

/** A part header block (without its final blank line): its name and whether it is a file. */
export function parsePartHead(block: Buffer): PartHead {
  if (!isUtf8(block)) throw malformed("part headers must be UTF-8");
  let disposition: string | undefined;
  for (const line of block.toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed("bad part header");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-disposition") {
      if (disposition !== undefined) throw malformed("two content-dispositions in a part");
      disposition = value;
    } else if (name === "content-transfer-encoding" && !/^(?:7bit|8bit|binary)$/i.test(value)) {
      // A reader that decodes base64 would see another value than the policy read.
      throw malformed("content-transfer-encoding not supported");
    }
  }
  if (disposition === undefined) throw malformed("part without content-disposition");
  return dispositionOf(disposition);
}

/** `form-data; name="x"; filename="y"`: quoted strings with backslash escapes, or tokens. */
function dispositionOf(value: string): PartHead {
  const m = /^form-data\s*(;|$)/i.exec(value);
  if (!m) throw malformed("part is not form-data");
  const params = new Map<string, string>();
  const re = /\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]*))\s*(?:;|$)/y;
  re.lastIndex = m[0].length;
  while (re.lastIndex < value.length) {
    const p = re.exec(value);
    if (!p) throw malformed("bad content-disposition");
    const key = p[1]!.toLowerCase();
    if (params.has(key)) throw malformed("a content-disposition parameter given twice");
    params.set(key, p[2] === undefined ? p[3]! : p[2].replace(/\\(.)/g, "$1"));
  }
  // RFC 5987 names (`name*=UTF-8''...`) are decoded by some readers and not by others.
  if (params.has("name*")) throw malformed("name* is not supported");
  const name = params.get("name");
  if (name === undefined) throw malformed("part without a name");
  return { name, file: params.has("filename") || params.has("filename*") };
}

/**
 * The text fields at the front of `body` (the bytes read so far; `ended` when that is all of
 * it). Undefined while more bytes are needed to tell; past `bound` bytes, stops with "bound"
 * and the fields complete so far. Throws a 400 RelayError on a body no reader should accept.
 */
export function leadingFields(body: Buffer, boundary: string, ended: boolean, bound: number): Leading | undefined {
  const open = Buffer.from("--" + boundary);
  const delimiter = Buffer.from("\r\n--" + boundary);
  const fields: Field[] = [];
  const more = (): Leading | undefined => {
    if (ended) throw malformed("body ends inside a part");
    return body.length >= bound ? { fields, stop: "bound" } : undefined;
  };
  if (body.length < open.length) return more();
  if (!body.subarray(0, open.length).equals(open)) throw malformed("body must start with its boundary");
  let at = open.length;
  for (;;) {
    const after = afterDelimiter(body, at);
    if (after === "more") return more();
    if (after === "end") return { fields, stop: "end" };
    const headEnd = body.indexOf(HEADERS_END, after);
    if (headEnd === -1) {
      if (body.length - after > MAX_PART_HEADERS) throw malformed("part headers too long");
      return more();
    }
    if (headEnd - after > MAX_PART_HEADERS) throw malformed("part headers too long");
    const head = parsePartHead(body.subarray(after, headEnd));
    if (head.file) return { fields, stop: "file" };
    const valueAt = headEnd + HEADERS_END.length;
    const next = body.indexOf(delimiter, valueAt);
    if (next === -1) return more();
    fields.push({ name: head.name, value: body.subarray(valueAt, next) });
    at = next + delimiter.length;
  }
}

/**
 * Right after a delimiter: "end" for the closing `--`, else where the part's headers start
 * (past optional transport padding and a CRLF), or "more" when the bytes do not tell yet.
 */
function afterDelimiter(body: Buffer, at: number): number | "end" | "more" {
  if (body.length < at + 2) return "more";
  if (body[at] === 0x2d && body[at + 1] === 0x2d) return "end";
  let i = at;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x09)) i++;
  if (i - at > 64) throw malformed("bad delimiter line");
  if (body.length < i + 2) return "more";
  if (body[i] !== CRLF[0] || body[i + 1] !== CRLF[1]) throw malformed("bad delimiter line");
  return i + 2;
}

/**
 * Watches every part header of a body streamed through it, from the start, and hands the
 * heads after the first `skip` parts to `check` (which throws to cut the upload). Holds at
 * most one header block and a delimiter's length of bytes; long chunks are searched in place.
 */
export class PartWatcher {
  readonly #delimiter: Buffer;
  /** The last bytes of the stream, which may begin a delimiter that the next chunk ends. */
  #carry: Buffer;
  /** The bytes after a delimiter, while its part's header block is incomplete. */
  #head: Buffer | undefined;
  #parts = 0;
  #ended = false;

  constructor(
    boundary: string,
    private readonly skip: number,
    private readonly check: (head: PartHead) => void,
  ) {
    this.#delimiter = Buffer.from("\r\n--" + boundary);
    // The first delimiter has no CRLF in front of it: as if one had come.
    this.#carry = Buffer.from("\r\n");
  }

  feed(chunk: Buffer): void {
    let at = 0;
    while (!this.#ended && at < chunk.length) {
      if (this.#head !== undefined) {
        const used = this.#readHead(chunk.subarray(at));
        if (used === undefined) return;
        at += used;
        continue;
      }
      const end = this.#findDelimiter(chunk, at);
      if (end === -1) return;
      this.#head = Buffer.alloc(0);
      at = end;
    }
  }

  /** Where the next delimiter in the stream ends, within `chunk` (from `at`), or -1. */
  #findDelimiter(chunk: Buffer, at: number): number {
    const d = this.#delimiter.length;
    const carried = this.#carry;
    this.#carry = EMPTY;
    if (carried.length > 0) {
      const seam = Buffer.concat([carried, chunk.subarray(0, d - 1)]);
      const i = seam.indexOf(this.#delimiter);
      if (i !== -1 && i < carried.length) return i + d - carried.length;
    }
    const i = chunk.indexOf(this.#delimiter, at);
    if (i !== -1) return i + d;
    // The stream's last d-1 bytes: from this chunk alone when it is long enough.
    const rest = chunk.subarray(at);
    this.#carry = Buffer.from(rest.length >= d - 1 ? rest.subarray(rest.length - (d - 1)) : Buffer.concat([carried, rest]).subarray(-(d - 1)));
    return -1;
  }

  /** Adds bytes to the header block; returns how many of them it used once complete, else undefined. */
  #readHead(bytes: Buffer): number | undefined {
    const before = this.#head!.length;
    const head = Buffer.concat([this.#head!, bytes.subarray(0, MAX_PART_HEADERS + 128)]);
    if (head.length >= 2 && head[0] === 0x2d && head[1] === 0x2d) {
      this.#ended = true; // the closing delimiter: nothing after it is a part
      this.#head = undefined;
      return head.length - before;
    }
    const lineEnd = head.indexOf(CRLF);
    const end = lineEnd === -1 ? -1 : head.indexOf(HEADERS_END, lineEnd);
    if (end === -1) {
      if (head.length > MAX_PART_HEADERS + 64) throw malformed("part headers too long");
      this.#head = head;
      return undefined;
    }
    this.#head = undefined;
    if (lineEnd > 64 || !/^[ \t]*$/.test(head.subarray(0, lineEnd).toString("latin1"))) throw malformed("bad delimiter line");
    // An empty header block ends right at the delimiter line's CRLF.
    const block = end === lineEnd ? Buffer.alloc(0) : head.subarray(lineEnd + 2, end);
    if (this.#parts++ >= this.skip) this.check(parsePartHead(block));
    return end + HEADERS_END.length - before;
  }
}
