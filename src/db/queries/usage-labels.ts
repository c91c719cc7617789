/**
 * `usage_labels`: the strings usage rows refer to by a 4-byte id (issue 23). Ids never change
 * and labels are never deleted, so a process keeps the ones it has seen (per database, bounded)
 * and a batch of calls asks the database only for strings it has not met yet.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../client.js";

/** Distinct strings remembered per database; past it the memory starts over (ids stay valid). */
const CACHE_MAX = 50_000;

const caches = new WeakMap<Db, Map<string, number>>();

/** Rows of `db.execute`: postgres.js answers with an array, PGlite with `{ rows }`. */
export function resultRows<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: unknown } | null)?.rows;
  return Array.isArray(rows) ? (rows as T[]) : [];
}

/**
 * The id of every string in `values`, inserting those that are new. Two statements rather than
 * one: the insert's ON CONFLICT skips a label another instance committed meanwhile, and only a
 * later statement's snapshot sees it.
 */
export async function labelIds(db: Db, values: Iterable<string>): Promise<Map<string, number>> {
  let cache = caches.get(db);
  if (cache === undefined) caches.set(db, (cache = new Map()));
  const ids = new Map<string, number>();
  const missing = new Set<string>();
  for (const v of values) {
    const id = cache.get(v);
    if (id === undefined) missing.add(v);
    else ids.set(v, id);
  }
  if (missing.size > 0) {
    const json = JSON.stringify([...missing].sort());
    // Sorted: two instances inserting the same new labels take their index locks in one order.
    await db.execute(sql`insert into usage_labels (value)
      select v from json_array_elements_text(${json}::json) as x(v) order by v on conflict (value) do nothing`);
    const found = resultRows<{ id: number; value: string }>(
      await db.execute(sql`select id, value from usage_labels where value in (select json_array_elements_text(${json}::json))`),
    );
    if (cache.size + found.length > CACHE_MAX) cache.clear();
    for (const r of found) {
      ids.set(r.value, Number(r.id));
      cache.set(r.value, Number(r.id));
    }
  }
  return ids;
}
