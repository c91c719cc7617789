/**
 * The rows of `usage_calls` as one PostgreSQL array literal per column (COPY_COLUMNS, `at` as
 * epoch milliseconds), unpacked by `unnest` in one statement: the form of a usage batch that
 * workers of `serve --workers` send to the primary's PGlite (src/db/queries/usage.ts), which
 * they reach as PostgreSQL, so no COPY from a blob. Measured on PGlite, CPU per row inserted:
 * ~6 µs from these arrays, ~7.5 with `at` as ISO text (the timestamp's parse), ~8 from the
 * JSON that PostgreSQL gets (src/db/queries/usage.ts), ~4.5 by binary COPY.
 */
import type { UsageRowWriter } from "./usage-copy-binary.js";

/** Number of columns: COPY_COLUMNS. */
const COLUMNS = 19;

/**
 * Accumulates the column arrays row by row; `row` never refuses a value: each is written as JS
 * prints it, for the database to refuse what its column cannot hold (a data error), as it would
 * the row itself. `at` is truncated to the millisecond, as `new Date(at)` does on the other paths.
 */
export class ArrayRows {
  readonly #cols: string[] = Array.from({ length: COLUMNS }, () => "");
  #sep = "";

  readonly row: UsageRowWriter = (r, token, subject, provider, model, key, flags, attempts, plan, cached, reasoning, cost) => {
    const c = this.#cols;
    const s = this.#sep;
    c[0] += s + Math.trunc(r.at);
    c[1] += s + r.bytes;
    c[2] += s + token;
    c[3] += s + subject;
    c[4] += s + provider;
    c[5] += s + model;
    c[6] += s + key;
    c[7] += s + r.promptTokens;
    c[8] += s + r.completionTokens;
    c[9] += s + r.totalTokens;
    c[10] += s + r.latencyMs;
    c[11] += s + r.status;
    c[12] += s + r.outcome;
    c[13] += s + flags;
    c[14] += s + arrayElement(attempts);
    c[15] += s + plan;
    c[16] += s + cached;
    c[17] += s + reasoning;
    c[18] += s + (cost === null ? "NULL" : cost);
    this.#sep = ",";
    return true;
  };

  /** The column arrays, in COPY_COLUMNS order. */
  finish(): string[] {
    return this.#cols.map((c) => `{${c}}`);
  }
}

/** A text element of an array literal: always quoted (so "" and "NULL" stay text), `"` and `\` escaped. */
export function arrayElement(v: string): string {
  return v === "" ? '""' : `"${v.replace(/["\\]/g, "\\$&")}"`;
}
