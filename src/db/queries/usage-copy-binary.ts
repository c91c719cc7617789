/**
 * The rows of `usage_calls` in COPY's binary format, for the PGlite path of a usage batch
 * (src/db/queries/usage-batch-shape.ts). Binary rather than text: PGlite (WASM, Liftoff only)
 * spent ~3.5 of its ~9.5 µs per copied row parsing the text, JS ~1 µs building it.
 */
import type { UsageInsert } from "./usage.js";

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000;
const TWO_32 = 4_294_967_296;
/** COPY's binary signature, then 32-bit flags and header-extension length (both 0). */
const COPY_SIGNATURE = [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
/** A row's fixed part: field count, 19 lengths, three int8 (at, bytes, cost), twelve int4, three int2. */
const ROW_BYTES = 2 + 19 * 4 + 3 * 8 + 12 * 4 + 3 * 2;
const utf8 = new TextEncoder();

/**
 * Writes one row of `usage_calls` (COPY_COLUMNS) from its record, the ids of its labels and its
 * optional fields with their defaults; false when this form cannot hold one of its values.
 */
export type UsageRowWriter = (
  r: UsageInsert,
  token: number,
  subject: number,
  provider: number,
  model: number,
  key: number,
  flags: number,
  attempts: string,
  plan: number,
  cached: number,
  reasoning: number,
  cost: number | null,
) => boolean;

/**
 * The rows in COPY's binary format (https://www.postgresql.org/docs/current/sql-copy.html,
 * "Binary Format"), columns as COPY_COLUMNS. `row` returns false, writing nothing, for a row
 * with a value its column's binary form cannot hold exactly (not an integer, out of range, a
 * NUL in text): the caller then writes the batch as text, for the database to judge.
 */
export class BinaryRows {
  #buf: Uint8Array<ArrayBuffer>;
  #view: DataView;
  #at = COPY_SIGNATURE.length;

  constructor(rows: number) {
    this.#buf = new Uint8Array(COPY_SIGNATURE.length + rows * ROW_BYTES + 2);
    this.#view = new DataView(this.#buf.buffer);
    this.#buf.set(COPY_SIGNATURE);
  }

  readonly row: UsageRowWriter = (r, token, subject, provider, model, key, flags, attempts, plan, cached, reasoning, cost) => {
    const us = r.at * 1000 - PG_EPOCH_US;
    if (
      !(Number.isSafeInteger(r.at) && Number.isSafeInteger(us) && Number.isSafeInteger(r.bytes) && (cost === null || Number.isSafeInteger(cost))) ||
      !(int4(token) && int4(subject) && int4(provider) && int4(model) && int4(key) && int4(plan)) ||
      !(int4(r.promptTokens) && int4(r.completionTokens) && int4(r.totalTokens) && int4(r.latencyMs) && int4(cached) && int4(reasoning)) ||
      !(int2(r.status) && int2(r.outcome) && int2(flags)) ||
      typeof attempts !== "string" ||
      attempts.includes("\0")
    )
      return false;
    const text = attempts === "" ? undefined : utf8.encode(attempts);
    this.#reserve(ROW_BYTES + (text?.length ?? 0));
    const v = this.#view;
    let o = this.#at;
    v.setInt16(o, 19);
    o = int8(v, o + 2, us);
    o = int8(v, o, r.bytes);
    o = int4At(v, o, token);
    o = int4At(v, o, subject);
    o = int4At(v, o, provider);
    o = int4At(v, o, model);
    o = int4At(v, o, key);
    o = int4At(v, o, r.promptTokens);
    o = int4At(v, o, r.completionTokens);
    o = int4At(v, o, r.totalTokens);
    o = int4At(v, o, r.latencyMs);
    o = int2At(v, o, r.status);
    o = int2At(v, o, r.outcome);
    o = int2At(v, o, flags);
    v.setInt32(o, text?.length ?? 0);
    o += 4;
    if (text !== undefined) {
      this.#buf.set(text, o);
      o += text.length;
    }
    o = int4At(v, o, plan);
    o = int4At(v, o, cached);
    o = int4At(v, o, reasoning);
    if (cost === null) {
      v.setInt32(o, -1);
      o += 4;
    } else o = int8(v, o, cost);
    this.#at = o;
    return true;
  };

  /** The whole COPY data: the rows and the trailer. */
  finish(): Uint8Array<ArrayBuffer> {
    this.#reserve(2);
    this.#view.setInt16(this.#at, -1);
    return this.#buf.subarray(0, this.#at + 2);
  }

  #reserve(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#at + n + 2));
    grown.set(this.#buf.subarray(0, this.#at));
    this.#buf = grown;
    this.#view = new DataView(grown.buffer);
  }
}

function int4(n: number): boolean {
  return (n | 0) === n;
}

function int2(n: number): boolean {
  return (n << 16) >> 16 === n;
}

/** Field writers: the length, then `n` big-endian (int8: a safe integer); each returns the next offset. */
function int4At(v: DataView, o: number, n: number): number {
  v.setInt32(o, 4);
  v.setInt32(o + 4, n);
  return o + 8;
}

function int2At(v: DataView, o: number, n: number): number {
  v.setInt32(o, 2);
  v.setInt16(o + 4, n);
  return o + 6;
}

function int8(v: DataView, o: number, n: number): number {
  const hi = Math.floor(n / TWO_32);
  v.setInt32(o, 8);
  v.setInt32(o + 4, hi);
  v.setUint32(o + 8, n - hi * TWO_32);
  return o + 12;
}
