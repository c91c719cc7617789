/**
 * The rows of `usage_calls` in COPY's binary format, for the PGlite path of a usage batch
 * (src/db/queries/usage-batch-shape.ts). Binary rather than text: PGlite (WASM, Liftoff only)
 * spent ~3.5 of its ~9.5 µs per copied row parsing the text, JS ~1 µs building it.
 *
 * A batch leaves out the optional columns (OPTIONAL_COLUMNS) that hold their default in every
 * one of its rows, as most batches' do (no failover, no flag, no plan, no cached or reasoning
 * tokens, or no price): the table's default then fills them, the same value, and PGlite neither
 * reads nor parses those fields (issue 22). Each field costs it a length, a buffer copy and a
 * receive function call per row; with the six left out a batch of 1000 rows took ~0.4 µs less
 * of PGlite's CPU per row (5.37 -> 4.99, medians of 80 interleaved COPYs).
 */
import type { UsageInsert } from "./usage.js";

/**
 * The columns a batch may leave out, as bits of BinaryRows' `optional`, each with the value its
 * default gives (drizzle/: flags 0, attempts '', plan 0, cached and reasoning tokens 0, cost
 * NULL, the column having no default), in COPY_COLUMNS order.
 */
export const OPTIONAL_COLUMNS = {
  flags: 1,
  attempts: 2,
  plan: 4,
  cached_tokens: 8,
  reasoning_tokens: 16,
  cost_micro_usd: 32,
} as const;

/** Every optional column: the form of a row that holds them all. */
export const ALL_OPTIONAL = 63;

/** The columns always copied, in COPY_COLUMNS order (COPY_COLUMNS: usage-batch-shape.ts). */
const REQUIRED_COLUMNS = "at, bytes, token, subject, provider, model, key, prompt_tokens, completion_tokens, total_tokens, latency_ms, status, outcome";

/** The column list of a COPY holding the `optional` columns (bits of OPTIONAL_COLUMNS). */
export function copyColumns(optional: number): string {
  let list = REQUIRED_COLUMNS;
  for (const [name, bit] of Object.entries(OPTIONAL_COLUMNS)) if ((optional & bit) !== 0) list += `, ${name}`;
  return list;
}

/** The optional columns some row of `rows` holds a value other than the default of. */
export function optionalColumns(rows: readonly UsageInsert[]): number {
  let optional = 0;
  for (const r of rows) {
    if (r.flags) optional |= OPTIONAL_COLUMNS.flags;
    if (r.attempts) optional |= OPTIONAL_COLUMNS.attempts;
    if (r.plan) optional |= OPTIONAL_COLUMNS.plan;
    if (r.cachedTokens) optional |= OPTIONAL_COLUMNS.cached_tokens;
    if (r.reasoningTokens) optional |= OPTIONAL_COLUMNS.reasoning_tokens;
    if (r.costMicroUsd !== undefined && r.costMicroUsd !== null) optional |= OPTIONAL_COLUMNS.cost_micro_usd;
    if (optional === ALL_OPTIONAL) break;
  }
  return optional;
}

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
  readonly #optional: number;
  readonly #fields: number;

  /**
   * `optional`: the optional columns the rows hold (bits of OPTIONAL_COLUMNS; copyColumns names
   * them for the COPY); `row` refuses a row that holds a value other than the default in a
   * column left out.
   */
  constructor(rows: number, optional = ALL_OPTIONAL) {
    this.#buf = new Uint8Array(COPY_SIGNATURE.length + rows * ROW_BYTES + 2);
    this.#view = new DataView(this.#buf.buffer);
    this.#buf.set(COPY_SIGNATURE);
    this.#optional = optional;
    let fields = 13;
    for (const bit of Object.values(OPTIONAL_COLUMNS)) if ((optional & bit) !== 0) fields++;
    this.#fields = fields;
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
    // A value where the batch left its column out (NaN is not the default either): the batch goes as text.
    const optional = this.#optional;
    if (
      ((optional & OPTIONAL_COLUMNS.flags) === 0 && flags !== 0) ||
      ((optional & OPTIONAL_COLUMNS.attempts) === 0 && attempts !== "") ||
      ((optional & OPTIONAL_COLUMNS.plan) === 0 && plan !== 0) ||
      ((optional & OPTIONAL_COLUMNS.cached_tokens) === 0 && cached !== 0) ||
      ((optional & OPTIONAL_COLUMNS.reasoning_tokens) === 0 && reasoning !== 0) ||
      ((optional & OPTIONAL_COLUMNS.cost_micro_usd) === 0 && cost !== null)
    )
      return false;
    const text = attempts === "" ? undefined : utf8.encode(attempts);
    this.#reserve(ROW_BYTES + (text?.length ?? 0));
    const v = this.#view;
    let o = this.#at;
    v.setInt16(o, this.#fields);
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
    if ((optional & OPTIONAL_COLUMNS.flags) !== 0) o = int2At(v, o, flags);
    if ((optional & OPTIONAL_COLUMNS.attempts) !== 0) {
      v.setInt32(o, text?.length ?? 0);
      o += 4;
      if (text !== undefined) {
        this.#buf.set(text, o);
        o += text.length;
      }
    }
    if ((optional & OPTIONAL_COLUMNS.plan) !== 0) o = int4At(v, o, plan);
    if ((optional & OPTIONAL_COLUMNS.cached_tokens) !== 0) o = int4At(v, o, cached);
    if ((optional & OPTIONAL_COLUMNS.reasoning_tokens) !== 0) o = int4At(v, o, reasoning);
    if ((optional & OPTIONAL_COLUMNS.cost_micro_usd) !== 0) {
      if (cost === null) {
        v.setInt32(o, -1);
        o += 4;
      } else o = int8(v, o, cost);
    }
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
