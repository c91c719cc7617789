/** Who created an object a provider stores (issue 25, item 3): src/relay/object-ownership.ts. */
import { and, gt, inArray, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { ownedObjects } from "../schema/index.js";
import { resultRows } from "./usage-labels.js";

/** The subjects that created `objects` (`<provider>:<id>`), by object; unknown and expired ones are absent. */
export async function ownersOf(db: Db, objects: readonly string[]): Promise<Map<string, string>> {
  const rows = await db
    .select({ object: ownedObjects.object, subject: ownedObjects.subject })
    .from(ownedObjects)
    .where(and(inArray(ownedObjects.object, [...objects]), gt(ownedObjects.expiresAt, sql`now()`)));
  return new Map(rows.map((r) => [r.object, r.subject]));
}

/** Records `object` as `subject`'s; the first record of an id wins, a later one is ignored. */
export async function recordOwner(db: Db, object: string, subject: string, expiresAt: Date): Promise<void> {
  await db.insert(ownedObjects).values({ object, subject, expiresAt }).onConflictDoNothing();
}

/** Deletes up to `limit` expired rows, the oldest first (through the expiry index); returns how many. */
export async function pruneOwnedObjects(db: Db, limit: number): Promise<number> {
  const oldest = sql`select ctid from owned_objects where expires_at <= now() order by expires_at limit ${limit}`;
  const [row] = resultRows<{ n: string | number }>(
    await db.execute(sql`with gone as (delete from owned_objects where ctid = any(array(${oldest})) returning 1) select count(*) as n from gone`),
  );
  return Number(row?.n ?? 0);
}
