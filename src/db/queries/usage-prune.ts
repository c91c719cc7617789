/**
 * Retention queries (issue 23), each one bounded so that on PGlite, where every statement runs
 * on the event loop, no single one takes long:
 * - raw rows are deleted by ranges of heap pages (`ctid` ranges: a TID range scan reads just those
 *   pages, whatever the table's size and with no index beyond BRIN);
 * - roll-ups and audit rows by a limited number of the oldest, found through their B-tree.
 * Every function counts instead of deleting when `dryRun` is set.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { resultRows } from "./usage-labels.js";

/** Heap pages of `usage_calls` now (rows appended later are younger than any cutoff). */
export async function rawPageCount(db: Db): Promise<number> {
  const [row] = resultRows<{ pages: string | number }>(
    await db.execute(sql`select (pg_relation_size('usage_calls') / current_setting('block_size')::integer)::bigint as pages`),
  );
  return Number(row?.pages ?? 0);
}

/** Deletes (or counts) the raw rows older than `cutoff` in heap pages [from, to). */
export async function pruneRawPages(db: Db, from: number, to: number, cutoff: Date, dryRun: boolean): Promise<number> {
  const where = sql`ctid >= ${`(${from},0)`}::tid and ctid < ${`(${to},0)`}::tid and at < ${cutoff.toISOString()}::timestamptz`;
  if (dryRun) return countOf(await db.execute(sql`select count(*) as n from usage_calls where ${where}`));
  return countOf(await db.execute(sql`with gone as (delete from usage_calls where ${where} returning 1) select count(*) as n from gone`));
}

/** Deletes (or counts) up to `limit` of the oldest roll-ups that started before `cutoff`. */
export async function pruneRollups(db: Db, cutoff: Date, limit: number, dryRun: boolean): Promise<number> {
  const oldest = sql`select ctid from usage_rollups where start < ${cutoff.toISOString()}::timestamptz order by start limit ${limit}`;
  return pruneOldest(db, sql`usage_rollups`, oldest, dryRun);
}

/** Deletes (or counts) up to `limit` of the oldest audit events before `cutoff`. */
export async function pruneAudit(db: Db, cutoff: Date, limit: number, dryRun: boolean): Promise<number> {
  const oldest = sql`select ctid from audit_events where at < ${cutoff.toISOString()}::timestamptz order by at limit ${limit}`;
  return pruneOldest(db, sql`audit_events`, oldest, dryRun);
}

async function pruneOldest(db: Db, table: ReturnType<typeof sql>, oldest: ReturnType<typeof sql>, dryRun: boolean): Promise<number> {
  if (dryRun) return countOf(await db.execute(sql`select count(*) as n from (${oldest}) o`));
  return countOf(await db.execute(sql`with gone as (delete from ${table} where ctid = any(array(${oldest})) returning 1) select count(*) as n from gone`));
}

export type PrunedTable = "usage_calls" | "usage_rollups" | "audit_events";

/**
 * Makes the space of deleted rows reusable (PGlite only: it has no autovacuum). A plain VACUUM
 * reads only the pages changed since the last one (the visibility map skips the others), so its
 * cost follows the rows just deleted or written; the B-trees of roll-ups and audit rows are left
 * for a full VACUUM (a cleanup reads a whole index).
 */
export async function vacuumTable(db: Db, table: PrunedTable): Promise<void> {
  if (table === "usage_calls") await db.execute(sql`vacuum usage_calls`);
  else await db.execute(sql`vacuum (index_cleanup off) ${sql.raw(table)}`);
}

function countOf(result: unknown): number {
  const [row] = resultRows<{ n: string | number }>(result);
  return Number(row?.n ?? 0);
}
