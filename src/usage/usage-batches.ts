/**
 * Writing one batch of usage rows so that a poison row cannot block the rest (issue 18, finding
 * 3): a batch refused for its DATA (SQLSTATE class 22 or 23) is bisected until the rows that fail
 * alone are found; those are handed to `keep` (the dead letters), the others are written. Any
 * other failure (connection lost, database unavailable) is not the rows' fault: it stops at once
 * and reports what is still unwritten, for the writer to retry with backoff.
 */
import type { Db } from "../db/client.js";
import { insertUsageBatch, type UsageInsert } from "../db/queries/usage.js";

export interface BatchFailure {
  /** The rows not written, in order: a suffix of the batch (each statement is atomic). */
  unwritten: UsageInsert[];
  error: unknown;
}

/** Keeps one refused row elsewhere; returns an error when it could not do so now (retry later). */
export type KeepRefused = (row: UsageInsert, refusal: unknown) => Promise<unknown>;

/**
 * Writes `batch` in order; undefined when every row was written or kept. k poison rows in n cost
 * about 2k·log2(n) extra statements, and the rows around them are written.
 */
export async function writeIsolating(db: Db, batch: UsageInsert[], keep: KeepRefused): Promise<BatchFailure | undefined> {
  // Ranges [lo, hi) still to write; the next one is on top, so they stay in order and what
  // lies before the range on top is always done.
  const todo: [number, number][] = [[0, batch.length]];
  for (let range = todo.pop(); range !== undefined; range = todo.pop()) {
    const [lo, hi] = range;
    const rows = lo === 0 && hi === batch.length ? batch : batch.slice(lo, hi);
    try {
      await insertUsageBatch(db, rows);
    } catch (e) {
      if (!isDataError(e)) return { unwritten: batch.slice(lo), error: e };
      if (hi - lo > 1) {
        const mid = (lo + hi) >>> 1;
        todo.push([mid, hi], [lo, mid]);
        continue;
      }
      const failed = await keep(rows[0]!, e);
      if (failed !== undefined) return { unwritten: batch.slice(lo), error: failed };
    }
  }
  return undefined;
}

/** SQLSTATE class 22 (data exception: 22003 out of range, 22P05 NUL...) or 23 (constraint). */
export function isDataError(e: unknown): boolean {
  return /^2[23][0-9A-Z]{3}$/.test(driverError(e).code ?? "");
}

/** An error as logged and kept with a dead letter: the SQLSTATE and the driver's own message. */
export function describeError(e: unknown): string {
  const { code, message } = driverError(e);
  return code === undefined ? message : `${code} ${message}`;
}

/**
 * The driver's own error inside drizzle's wrapper (DrizzleQueryError keeps it in `cause`): the
 * first in the chain with a SQLSTATE, else the innermost. Never the wrapper's message, which
 * holds the statement's parameters (the whole batch).
 */
function driverError(e: unknown): { code: string | undefined; message: string } {
  let err = e;
  for (let depth = 0; depth < 4; depth++) {
    const { code, cause } = (typeof err === "object" && err !== null ? err : {}) as { code?: unknown; cause?: unknown };
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return { code, message: messageOf(err) };
    if (typeof cause !== "object" || cause === null) break;
    err = cause;
  }
  return { code: undefined, message: messageOf(err) };
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
