/**
 * A one-pass scanner for the top level of a JSON object held as UTF-8 bytes (DESIGN 3.4).
 *
 * Policy checks need a few top-level fields, and the relay forwards the client's own bytes.
 * scanTopLevel validates the whole document with exactly JSON.parse's acceptance (applied to
 * `body.toString("utf8")`), except that it refuses duplicate top-level keys (compared after
 * decoding escapes) and nesting deeper than MAX_DEPTH. Only top-level keys are materialised;
 * values are byte ranges read on demand. Splices edit a body without re-serialising it.
 *
 * Speed: string contents are skipped with memchr (Buffer#indexOf) for quotes and backslashes
 * and checked for raw control characters four bytes at a time; everything else is a byte loop.
 * The module keeps per-call state in module variables (calls are synchronous, never nested).
 */

/** Containers deeper than this are refused; the top-level object is depth 1. */
export const MAX_DEPTH = 64;

export type JsonScanMessage =
  | "invalid JSON"
  | "JSON top level is not an object"
  | "duplicate top-level key"
  | "JSON nested too deeply";

export class JsonScanError extends Error {
  override readonly name = "JsonScanError";
  /** Byte offset where the scan stopped; for logs, never for clients. */
  readonly offset: number;
  constructor(message: JsonScanMessage, offset: number) {
    super(message);
    this.offset = offset;
  }
}

/** A field of a scanned object: its decoded key and the byte range of its raw value. */
export interface TopLevelField {
  key: string;
  valueStart: number;
  valueEnd: number;
}

export interface ScanResult {
  fields: Map<string, TopLevelField>;
  /** Offset of the object's closing `}`. */
  objectEnd: number;
}

export type JsonKind = "object" | "array" | "string" | "number" | "boolean" | "null";

/** Replace bytes [start, end) with text; start === end inserts. */
export interface Splice {
  start: number;
  end: number;
  text: string;
}

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a, MINUS = 0x2d, PLUS = 0x2b, DOT = 0x2e;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d;
const EMPTY = Buffer.alloc(0);
/** Plain string bytes read one at a time before switching to words. */
const BYTE_RUN = 12;

/** Byte classes inside a string: 0 plain, 1 quote, 2 backslash, 3 raw control character. */
const STRING_CLASS = new Uint8Array(256).fill(3, 0, 0x20);
STRING_CLASS[QUOTE] = 1;
STRING_CLASS[BACKSLASH] = 2;
/** Bytes allowed after a backslash, apart from `u`. */
const SIMPLE_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPE[c.charCodeAt(0)] = 1;

// Per-call state.
let b: Buffer = EMPTY;
let n = 0; // end of the scanned range
let base = 0; // b.byteOffset
let sawEscape = false; // set by skipString when the string held an escape
// The whole ArrayBuffer under b as 32-bit words; kept for the next call when small (pooled).
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);
let wordsOf: ArrayBufferLike = words.buffer;

function begin(body: Buffer, end: number): void {
  b = body;
  n = end;
  base = body.byteOffset;
  const ab = body.buffer;
  if (ab !== wordsOf) {
    words = new Int32Array(ab, 0, ab.byteLength >> 2);
    wordsOf = ab;
  }
}

function end(): void {
  b = EMPTY; // do not keep a large body alive
  if (wordsOf.byteLength > 65536) {
    words = new Int32Array(0);
    wordsOf = words.buffer;
  }
}

function fail(message: JsonScanMessage, at: number): never {
  throw new JsonScanError(message, at);
}

function peek(i: number): number {
  return i < n ? b[i]! : -1;
}

function ws(i: number): number {
  while (i < n) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
}

/** i is just past the opening quote; returns the offset just past the closing quote. */
function skipString(i: number): number {
  sawEscape = false;
  const buf = b;
  for (;;) {
    // Byte by byte while plain bytes are few (short strings, text between escapes), then from
    // a 4-byte boundary whole words with nothing to look at.
    let stop = i + BYTE_RUN;
    while (i < stop || (base + i) & 3) {
      if (i >= n) fail("invalid JSON", n);
      const k = STRING_CLASS[buf[i]!]!;
      if (k === 0) i++;
      else if (k === 1) return i + 1;
      else if (k === 2) stop = (i = skipEscape(i)) + BYTE_RUN;
      else fail("invalid JSON", i);
    }
    i = skipPlainWords(i);
  }
}

/** i is at a backslash. */
function skipEscape(i: number): number {
  sawEscape = true;
  const c = peek(i + 1);
  if (c >= 0 && SIMPLE_ESCAPE[c] === 1) return i + 2;
  if (c === 0x75 && isHex(peek(i + 2)) && isHex(peek(i + 3)) && isHex(peek(i + 4)) && isHex(peek(i + 5))) return i + 6;
  return fail("invalid JSON", i);
}

/**
 * From a 4-byte-aligned i, skips words holding no quote, backslash or control character and
 * returns the offset of the first word that holds one (or of the tail). A word x holds a byte
 * below k (k <= 0x80) exactly when (x - k * 0x01010101) & ~x & 0x80808080 is not 0; x ^
 * 0x02020202 turns '"' into 0x20 and keeps control characters below 0x20, so one test finds
 * both; x ^ 0x5c5c5c5c turns a backslash into 0.
 */
function skipPlainWords(i: number): number {
  const w = words;
  const Q = 0x02020202, L = 0x21212121, S = 0x5c5c5c5c, O = 0x01010101;
  let j = (base + i) >> 2;
  const last = (base + n) >> 2; // words below last lie wholly before n
  for (; j + 4 <= last; j += 4) {
    const x0 = w[j]!, x1 = w[j + 1]!, x2 = w[j + 2]!, x3 = w[j + 3]!;
    const q0 = x0 ^ Q, q1 = x1 ^ Q, q2 = x2 ^ Q, q3 = x3 ^ Q;
    const s0 = x0 ^ S, s1 = x1 ^ S, s2 = x2 ^ S, s3 = x3 ^ S;
    if (
      (((q0 - L) & ~q0) | ((q1 - L) & ~q1) | ((q2 - L) & ~q2) | ((q3 - L) & ~q3) |
        ((s0 - O) & ~s0) | ((s1 - O) & ~s1) | ((s2 - O) & ~s2) | ((s3 - O) & ~s3)) & 0x80808080
    ) break;
  }
  for (; j < last; j++) {
    const x = w[j]!, q = x ^ Q, s = x ^ S;
    if ((((q - L) & ~q) | ((s - O) & ~s)) & 0x80808080) break;
  }
  return 4 * j - base;
}

/** Decoded top-level keys by a hash of their bytes, so a key costs no allocation when seen before. */
const keyCache = new Map<number, string>();

/** The key held in bytes [s, e), which contain no escape. */
function keyOf(s: number, e: number): string {
  const buf = b;
  let h = e - s;
  for (let k = s; k < e; k++) {
    const c = buf[k]!;
    if (c >= 0x80 || e - s > 64) return buf.toString("utf8", s, e);
    h = (Math.imul(h, 31) + c) | 0;
  }
  const hit = keyCache.get(h);
  if (hit !== undefined && hit.length === e - s) {
    let k = 0;
    while (k < hit.length && hit.charCodeAt(k) === buf[s + k]) k++;
    if (k === hit.length) return hit;
  }
  const key = buf.toString("latin1", s, e);
  if (keyCache.size >= 512) keyCache.clear();
  keyCache.set(h, key);
  return key;
}

function skipNumber(i: number): number {
  if (peek(i) === MINUS) i++;
  const c = peek(i);
  if (c === 0x30) i++;
  else if (c >= 0x31 && c <= 0x39) do i++; while (isDigit(peek(i)));
  else fail("invalid JSON", i);
  if (peek(i) === DOT) {
    if (!isDigit(peek(++i))) fail("invalid JSON", i);
    do i++; while (isDigit(peek(i)));
  }
  if ((peek(i) | 0x20) === 0x65) {
    const s = peek(++i);
    if (s === PLUS || s === MINUS) i++;
    if (!isDigit(peek(i))) fail("invalid JSON", i);
    do i++; while (isDigit(peek(i)));
  }
  return i;
}

function skipLiteral(i: number, text: string): number {
  for (let k = 0; k < text.length; k++) if (peek(i + k) !== text.charCodeAt(k)) fail("invalid JSON", i + k);
  return i + text.length;
}

/** i is at the first byte of a value inside a container at `depth`; returns the offset past it. */
function skipValue(i: number, depth: number): number {
  switch (peek(i)) {
    case QUOTE: return skipString(i + 1);
    case LBRACE: return skipObject(i + 1, depth + 1);
    case LBRACKET: return skipArray(i + 1, depth + 1);
    case 0x74: return skipLiteral(i, "true");
    case 0x66: return skipLiteral(i, "false");
    case 0x6e: return skipLiteral(i, "null");
    default: return skipNumber(i);
  }
}

function skipObject(i: number, depth: number): number {
  if (depth > MAX_DEPTH) fail("JSON nested too deeply", i - 1);
  i = ws(i);
  if (peek(i) === RBRACE) return i + 1;
  for (;;) {
    if (peek(i) !== QUOTE) fail("invalid JSON", i);
    i = ws(skipString(i + 1));
    if (peek(i) !== COLON) fail("invalid JSON", i);
    i = ws(skipValue(ws(i + 1), depth));
    const c = peek(i);
    if (c === RBRACE) return i + 1;
    if (c !== COMMA) fail("invalid JSON", i);
    i = ws(i + 1);
  }
}

/** Element count of the array skipArray last finished. */
let arrayCount = 0;

/** i is just past the `[`; returns the offset past the `]`. */
function skipArray(i: number, depth: number): number {
  if (depth > MAX_DEPTH) fail("JSON nested too deeply", i - 1);
  i = ws(i);
  let count = 0;
  if (peek(i) !== RBRACKET) {
    for (;;) {
      i = ws(skipValue(i, depth));
      count++;
      const c = peek(i);
      if (c === RBRACKET) break;
      if (c !== COMMA) fail("invalid JSON", i);
      i = ws(i + 1);
    }
  }
  arrayCount = count;
  return i + 1;
}

/** Scans the object at [start, stop), which must hold exactly one JSON value. */
function scanObject(start: number): ScanResult {
  let i = ws(start);
  if (peek(i) !== LBRACE) {
    const after = ws(skipValue(i, 0)); // valid JSON that is not an object, or garbage
    fail(after === n ? "JSON top level is not an object" : "invalid JSON", i);
  }
  const fields = new Map<string, TopLevelField>();
  i = ws(i + 1);
  if (peek(i) !== RBRACE) {
    for (;;) {
      if (peek(i) !== QUOTE) fail("invalid JSON", i);
      const keyAt = i;
      i = skipString(i + 1);
      const key = sawEscape ? (JSON.parse(b.toString("utf8", keyAt, i)) as string) : keyOf(keyAt + 1, i - 1);
      if (fields.has(key)) fail("duplicate top-level key", keyAt);
      i = ws(i);
      if (peek(i) !== COLON) fail("invalid JSON", i);
      const valueStart = ws(i + 1);
      const valueEnd = skipValue(valueStart, 1);
      fields.set(key, { key, valueStart, valueEnd });
      i = ws(valueEnd);
      const c = peek(i);
      if (c === RBRACE) break;
      if (c !== COMMA) fail("invalid JSON", i);
      i = ws(i + 1);
    }
  }
  if (ws(i + 1) !== n) fail("invalid JSON", i + 1);
  return { fields, objectEnd: i };
}

/**
 * Scans a JSON object body. Throws JsonScanError on malformed JSON, a top level that is not an
 * object, a duplicate top-level key, nesting deeper than MAX_DEPTH, or trailing bytes.
 */
export function scanTopLevel(body: Buffer): ScanResult {
  begin(body, body.length);
  try {
    return scanObject(0);
  } finally {
    end();
  }
}

/** Scans a field's value as an object of its own (duplicate keys refused there too); undefined when not an object. */
export function scanObjectValue(body: Buffer, f: TopLevelField): ScanResult | undefined {
  if (body[f.valueStart] !== LBRACE) return undefined;
  begin(body, f.valueEnd);
  try {
    return scanObject(f.valueStart);
  } finally {
    end();
  }
}

export function kindOf(body: Buffer, f: TopLevelField): JsonKind {
  switch (body[f.valueStart]) {
    case LBRACE: return "object";
    case LBRACKET: return "array";
    case QUOTE: return "string";
    case 0x74: case 0x66: return "boolean";
    case 0x6e: return "null";
    default: return "number";
  }
}

/** The decoded string, or undefined when the value is not a string. */
export function readString(body: Buffer, f: TopLevelField): string | undefined {
  if (body[f.valueStart] !== QUOTE) return undefined;
  const raw = body.subarray(f.valueStart, f.valueEnd);
  return raw.indexOf(BACKSLASH) < 0 ? raw.toString("utf8", 1, raw.length - 1) : (JSON.parse(raw.toString("utf8")) as string);
}

/** The number (as JSON.parse reads it), or undefined when the value is not a number. */
export function readNumber(body: Buffer, f: TopLevelField): number | undefined {
  return kindOf(body, f) === "number" ? Number(body.toString("latin1", f.valueStart, f.valueEnd)) : undefined;
}

export function readBoolean(body: Buffer, f: TopLevelField): boolean | undefined {
  const c = body[f.valueStart];
  return c === 0x74 ? true : c === 0x66 ? false : undefined;
}

export function isNull(body: Buffer, f: TopLevelField): boolean {
  return body[f.valueStart] === 0x6e;
}

/** Element count of an array value, or undefined when the value is not an array. */
export function readArrayLength(body: Buffer, f: TopLevelField): number | undefined {
  if (body[f.valueStart] !== LBRACKET) return undefined;
  begin(body, f.valueEnd);
  try {
    skipArray(f.valueStart + 1, 1);
    return arrayCount;
  } finally {
    end();
  }
}

/** True when text is exactly one JSON value (surrounding whitespace allowed). */
export function isJsonValue(text: string): boolean {
  const buf = Buffer.from(text, "utf8");
  begin(buf, buf.length);
  try {
    return ws(skipValue(ws(0), 0)) === n;
  } catch (err) {
    if (err instanceof JsonScanError) return false;
    throw err;
  } finally {
    end();
  }
}

function checkRaw(rawJsonValue: string): void {
  if (!isJsonValue(rawJsonValue)) throw new TypeError("splice value is not one JSON value");
}

/** A splice adding fields before the object's closing brace. Throws if a key is already present. */
export function insertionSplice(scan: ScanResult, entries: ReadonlyArray<readonly [key: string, rawJsonValue: string]>): Splice {
  let text = "";
  const added = new Set<string>();
  for (const [key, raw] of entries) {
    if (scan.fields.has(key) || added.has(key)) throw new TypeError("field already present");
    checkRaw(raw);
    added.add(key);
    text += (text !== "" || scan.fields.size > 0 ? "," : "") + JSON.stringify(key) + ":" + raw;
  }
  return { start: scan.objectEnd, end: scan.objectEnd, text };
}

export function replacementSplice(f: TopLevelField, rawJsonValue: string): Splice {
  checkRaw(rawJsonValue);
  return { start: f.valueStart, end: f.valueEnd, text: rawJsonValue };
}

/** Applies non-overlapping splices (any order) in one copy; no two may insert at the same offset. */
export function applySplices(body: Buffer, splices: readonly Splice[]): Buffer {
  if (splices.length === 0) return body;
  const sorted = [...splices].sort((x, y) => x.start - y.start || x.end - y.end);
  const parts: Buffer[] = [];
  let pos = 0;
  let prev: Splice | undefined;
  for (const s of sorted) {
    if (s.start < pos || s.end < s.start || s.end > body.length || (prev && prev.start === prev.end && prev.start === s.start)) {
      throw new RangeError("overlapping or out-of-range splice");
    }
    parts.push(body.subarray(pos, s.start), Buffer.from(s.text, "utf8"));
    pos = s.end;
    prev = s;
  }
  parts.push(body.subarray(pos));
  return Buffer.concat(parts);
}

/** Inserts `"key":<raw>` before the closing brace; the rest of the body is kept byte for byte. */
export function insertField(body: Buffer, scan: ScanResult, key: string, rawJsonValue: string): Buffer {
  return applySplices(body, [insertionSplice(scan, [[key, rawJsonValue]])]);
}

/** Replaces one field's raw value; the rest of the body is kept byte for byte. */
export function replaceValue(body: Buffer, f: TopLevelField, rawJsonValue: string): Buffer {
  return applySplices(body, [replacementSplice(f, rawJsonValue)]);
}
