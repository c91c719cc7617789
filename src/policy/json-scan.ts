/**
 * A one-pass scanner for the top level of a JSON object held as UTF-8 bytes (DESIGN 3.4).
 *
 * Policy checks need a few top-level fields, and the relay forwards the client's own bytes.
 * scanTopLevel validates the whole document with exactly JSON.parse's acceptance (applied to
 * `body.toString("utf8")`), except that it refuses duplicate top-level keys (compared after
 * decoding escapes) and nesting deeper than MAX_DEPTH. Only top-level keys are materialised;
 * values are byte ranges read on demand. Splices edit a body without re-serialising it.
 *
 * Speed: string contents, most of a body, are read four bytes at a time (skipString); the
 * rest is a byte loop. Per-call state lives in module variables (calls are synchronous).
 */

/** Containers deeper than this are refused; the top-level object is depth 1. */
export const MAX_DEPTH = 64;

export type JsonScanMessage = "invalid JSON" | "JSON top level is not an object" | "duplicate top-level key" | "JSON nested too deeply";

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

/** Replace bytes [start, end) with text; start === end inserts. */
export interface Splice {
  start: number;
  end: number;
  text: string;
}

const QUOTE = 0x22,
  BACKSLASH = 0x5c,
  COMMA = 0x2c,
  COLON = 0x3a,
  MINUS = 0x2d,
  PLUS = 0x2b,
  DOT = 0x2e;
const LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  T = 0x74,
  F = 0x66,
  N = 0x6e;
const EMPTY = Buffer.alloc(0);
/** Bytes allowed after a backslash, apart from `u`. */
const SIMPLE_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPE[c.charCodeAt(0)] = 1;
/** skipString's word tricks assume little-endian words; elsewhere strings go byte by byte. */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

// Per-call state.
let b: Buffer = EMPTY;
let n = 0; // end of the scanned range
let base = 0; // b.byteOffset
let sawEscape = false; // set by skipString when the string held an escape
// The whole ArrayBuffer under b as 32-bit words; kept for the next call when small (pooled).
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);
let wordsOf: ArrayBufferLike = words.buffer;

/** Runs fn over body[..end) with the per-call state set, and drops the body afterwards. */
function over<R>(body: Buffer, end: number, fn: () => R): R {
  b = body;
  n = end;
  base = body.byteOffset;
  const ab = body.buffer;
  if (ab !== wordsOf && LITTLE_ENDIAN) {
    words = new Int32Array(ab, 0, ab.byteLength >> 2);
    wordsOf = ab;
  }
  try {
    return fn();
  } finally {
    b = EMPTY;
    if (wordsOf.byteLength > 65536) wordsOf = (words = new Int32Array(0)).buffer;
  }
}

function fail(message: JsonScanMessage, at: number): never {
  throw new JsonScanError(message, at);
}

const peek = (i: number): number => (i < n ? b[i]! : -1);
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isHex = (c: number): boolean => isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);

function ws(i: number): number {
  for (let c = 0; i < n && ((c = b[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09); i++);
  return i;
}

/**
 * Flags (0x80 in a byte) the bytes of word x that are '"', '\\' or below 0x20. A byte below k
 * (k <= 0x80) exists exactly when (x - k * 0x01010101) & ~x & 0x80808080 is not 0, and the
 * lowest flag is exact. x ^ 0x02020202 turns '"' into 0x20 and keeps control characters below
 * 0x20, so one test finds both; x ^ 0x5c5c5c5c turns a backslash into 0.
 */
function special(x: number): number {
  const q = x ^ 0x02020202,
    s = x ^ 0x5c5c5c5c;
  return (((q - 0x21212121) & ~q) | ((s - 0x01010101) & ~s)) & 0x80808080;
}

/**
 * i is just past the opening quote; returns the offset just past the closing quote. Reads
 * aligned words; bytes past the range may be read (same ArrayBuffer), but a hit there fails.
 */
function skipString(i: number): number {
  sawEscape = false;
  const w = words,
    wl = w.length,
    off = base;
  for (;;) {
    let j = (off + i) >> 2;
    if (j >= wl) return skipStringBytes(i);
    const m = (1 << (8 * ((off + i) & 3))) - 1; // bytes of the first word before i count as plain
    let f = special((w[j]! & ~m) | (0x41414141 & m));
    if (f === 0) {
      for (j++; j + 4 <= wl; j += 4) if (special(w[j]!) | special(w[j + 1]!) | special(w[j + 2]!) | special(w[j + 3]!)) break;
      for (; j < wl && (f = special(w[j]!)) === 0; j++);
      if (f === 0) return skipStringBytes(4 * j - off);
    }
    i = 4 * j - off + ((31 - Math.clz32(f & -f)) >> 3);
    if (i >= n) fail("invalid JSON", n);
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    if (c !== BACKSLASH) fail("invalid JSON", i);
    i = skipEscape(i);
  }
}

/** The end of a string byte by byte (after the last whole word of the ArrayBuffer). */
function skipStringBytes(i: number): number {
  for (; i < n; i++) {
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) i = skipEscape(i) - 1;
    else if (c < 0x20) fail("invalid JSON", i);
  }
  return fail("invalid JSON", n);
}

/** i is at a backslash. */
function skipEscape(i: number): number {
  sawEscape = true;
  const c = peek(i + 1);
  if (c >= 0 && SIMPLE_ESCAPE[c] === 1) return i + 2;
  if (c === 0x75 && isHex(peek(i + 2)) && isHex(peek(i + 3)) && isHex(peek(i + 4)) && isHex(peek(i + 5))) return i + 6;
  return fail("invalid JSON", i);
}

/** Decoded keys by a hash of their bytes: a key seen before costs no allocation. */
const keyCache = new Map<number, string>();

/** The key in bytes [s, e), which hold no escape. */
function keyOf(s: number, e: number): string {
  let h = e - s;
  for (let k = s; k < e; k++) {
    const c = b[k]!;
    if (c >= 0x80 || e - s > 64) return b.toString("utf8", s, e);
    h = (Math.imul(h, 31) + c) | 0;
  }
  const hit = keyCache.get(h);
  if (hit !== undefined && hit.length === e - s) {
    let k = 0;
    while (k < hit.length && hit.charCodeAt(k) === b[s + k]) k++;
    if (k === hit.length) return hit;
  }
  const key = b.toString("latin1", s, e);
  if (keyCache.size >= 512) keyCache.clear();
  keyCache.set(h, key);
  return key;
}

function skipDigits(i: number): number {
  if (!isDigit(peek(i))) fail("invalid JSON", i);
  while (isDigit(peek(++i)));
  return i;
}

function skipNumber(i: number): number {
  if (peek(i) === MINUS) i++;
  i = peek(i) === 0x30 ? i + 1 : skipDigits(i);
  if (peek(i) === DOT) i = skipDigits(i + 1);
  if ((peek(i) | 0x20) === 0x65) {
    const s = peek(++i);
    i = skipDigits(s === PLUS || s === MINUS ? i + 1 : i);
  }
  return i;
}

function skipLiteral(i: number, text: string): number {
  for (let k = 0; k < text.length; k++) if (peek(i + k) !== text.charCodeAt(k)) fail("invalid JSON", i + k);
  return i + text.length;
}

/** Open containers of the value being skipped: their opening byte. */
const stack = new Uint8Array(MAX_DEPTH + 1);

/** i is at a key's opening quote; returns the offset of its value. */
function skipKey(i: number): number {
  if (peek(i) !== QUOTE) fail("invalid JSON", i);
  i = ws(skipString(i + 1));
  if (peek(i) !== COLON) fail("invalid JSON", i);
  return ws(i + 1);
}

/**
 * i is at the first byte of a value inside containers `depth` deep; returns the offset past the
 * value. Iterative, with the open containers on `stack`.
 */
function skipValue(i: number, depth: number): number {
  let sp = 0;
  for (;;) {
    let c = peek(i);
    if (c === QUOTE) i = skipString(i + 1);
    else if (c === LBRACE || c === LBRACKET) {
      if (depth + sp >= MAX_DEPTH) fail("JSON nested too deeply", i);
      i = ws(i + 1);
      if (peek(i) === c + 2)
        i++; // `{}` or `[]`: '}' and ']' are 2 past '{' and '['
      else {
        stack[sp++] = c;
        if (c === LBRACE) i = skipKey(i);
        continue;
      }
    } else if (c === T) i = skipLiteral(i, "true");
    else if (c === F) i = skipLiteral(i, "false");
    else if (c === N) i = skipLiteral(i, "null");
    else i = skipNumber(i);
    // After a value: a comma starts the next one, or containers close.
    for (;;) {
      if (sp === 0) return i;
      i = ws(i);
      c = peek(i);
      const open = stack[sp - 1]!;
      if (c === COMMA) {
        i = ws(i + 1);
        if (open === LBRACE) i = skipKey(i);
        break;
      }
      if (c !== open + 2) fail("invalid JSON", i);
      sp--;
      i++;
    }
  }
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
  return over(body, body.length, () => scanObject(0));
}

/** Scans a field's value as an object of its own (duplicate keys refused there too); undefined when not an object. */
export function scanObjectValue(body: Buffer, f: TopLevelField): ScanResult | undefined {
  return body[f.valueStart] === LBRACE ? over(body, f.valueEnd, () => scanObject(f.valueStart)) : undefined;
}

/** The decoded string, or undefined when the value is not a string. */
export function readString(body: Buffer, f: TopLevelField): string | undefined {
  if (body[f.valueStart] !== QUOTE) return undefined;
  const raw = body.subarray(f.valueStart, f.valueEnd);
  return raw.indexOf(BACKSLASH) < 0 ? raw.toString("utf8", 1, raw.length - 1) : (JSON.parse(raw.toString("utf8")) as string);
}

/** The number (as JSON.parse reads it), or undefined when the value is not a number. */
export function readNumber(body: Buffer, f: TopLevelField): number | undefined {
  const c = body[f.valueStart]!;
  return c === MINUS || isDigit(c) ? Number(body.toString("latin1", f.valueStart, f.valueEnd)) : undefined;
}

export function readBoolean(body: Buffer, f: TopLevelField): boolean | undefined {
  const c = body[f.valueStart];
  return c === T ? true : c === F ? false : undefined;
}

export function isNull(body: Buffer, f: TopLevelField): boolean {
  return body[f.valueStart] === N;
}

/** Element count of an array value, or undefined when the value is not an array. */
export function readArrayLength(body: Buffer, f: TopLevelField): number | undefined {
  if (body[f.valueStart] !== LBRACKET) return undefined;
  return over(body, f.valueEnd, () => {
    let i = ws(f.valueStart + 1);
    if (peek(i) === RBRACKET) return 0;
    for (let count = 1; ; count++) {
      i = ws(skipValue(i, 1));
      if (peek(i) !== COMMA) return count;
      i = ws(i + 1);
    }
  });
}

function checkRaw(rawJsonValue: string): void {
  try {
    JSON.parse(rawJsonValue);
  } catch {
    throw new TypeError("splice value is not one JSON value");
  }
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
  const sorted = splices.length === 1 ? splices : [...splices].sort((x, y) => x.start - y.start || x.end - y.end);
  let size = body.length,
    pos = 0,
    point = -1;
  for (const s of sorted) {
    if (s.start < pos || s.end < s.start || s.end > body.length || s.start === point) throw new RangeError("overlapping or out-of-range splice");
    size += Buffer.byteLength(s.text) - (s.end - s.start);
    pos = s.end;
    point = s.start === s.end ? s.start : -1; // an insertion point, which nothing else may use
  }
  const out = Buffer.allocUnsafe(size); // every byte is written below
  let at = 0;
  pos = 0;
  for (const s of sorted) {
    at += body.copy(out, at, pos, s.start);
    at += out.write(s.text, at);
    pos = s.end;
  }
  body.copy(out, at, pos);
  return out;
}

/** Inserts `"key":<raw>` before the closing brace; the rest of the body is kept byte for byte. */
export function insertField(body: Buffer, scan: ScanResult, key: string, rawJsonValue: string): Buffer {
  return applySplices(body, [insertionSplice(scan, [[key, rawJsonValue]])]);
}

/** Replaces one field's raw value; the rest of the body is kept byte for byte. */
export function replaceValue(body: Buffer, f: TopLevelField, rawJsonValue: string): Buffer {
  return applySplices(body, [replacementSplice(f, rawJsonValue)]);
}
