/** Queries on `key_pools` and `upstream_keys`. Keys leave the database only encrypted. */
import { and, count, eq, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { keyPools, upstreamKeys, type KeyPoolRow, type UpstreamKeyRow } from "../schema/index.js";

export interface PoolWithCounts extends KeyPoolRow {
  keyCount: number;
  enabledKeyCount: number;
}

export async function createPool(db: Db, row: Pick<KeyPoolRow, "name" | "provider" | "strategy">): Promise<KeyPoolRow | undefined> {
  const [created] = await db.insert(keyPools).values(row).onConflictDoNothing().returning();
  return created;
}

export async function listPools(db: Db, provider?: string): Promise<PoolWithCounts[]> {
  const rows = await db
    .select({
      name: keyPools.name,
      provider: keyPools.provider,
      strategy: keyPools.strategy,
      createdAt: keyPools.createdAt,
      keyCount: count(upstreamKeys.id),
      enabledKeyCount: sql<number>`count(${upstreamKeys.id}) filter (where ${upstreamKeys.enabled})`.mapWith(Number),
    })
    .from(keyPools)
    .leftJoin(upstreamKeys, eq(upstreamKeys.pool, keyPools.name))
    .where(provider ? eq(keyPools.provider, provider) : undefined)
    .groupBy(keyPools.name)
    .orderBy(keyPools.name);
  return rows;
}

export async function findPool(db: Db, name: string): Promise<KeyPoolRow | undefined> {
  const [row] = await db.select().from(keyPools).where(eq(keyPools.name, name));
  return row;
}

export async function deletePool(db: Db, name: string): Promise<boolean> {
  return (await db.delete(keyPools).where(eq(keyPools.name, name)).returning({ name: keyPools.name })).length > 0;
}

export type NewKey = Pick<UpstreamKeyRow, "id" | "keyEnc" | "keyHash" | "masked" | "weight">;

/** Inserts keys, skipping any whose hash the pool already holds; returns the inserted rows. */
export async function insertKeys(db: Db, pool: string, keys: NewKey[]): Promise<UpstreamKeyRow[]> {
  if (keys.length === 0) return [];
  return db
    .insert(upstreamKeys)
    .values(keys.map((k) => ({ ...k, pool })))
    .onConflictDoNothing({ target: [upstreamKeys.pool, upstreamKeys.keyHash] })
    .returning();
}

export async function listKeys(db: Db, pool?: string): Promise<UpstreamKeyRow[]> {
  return db
    .select()
    .from(upstreamKeys)
    .where(pool ? eq(upstreamKeys.pool, pool) : undefined)
    .orderBy(upstreamKeys.pool, upstreamKeys.createdAt, upstreamKeys.id);
}

export async function setKeyEnabled(db: Db, id: string, enabled: boolean, reason: string): Promise<UpstreamKeyRow | undefined> {
  const [row] = await db
    .update(upstreamKeys)
    .set({ enabled, disabledReason: enabled ? "" : reason, cooldownUntil: enabled ? null : undefined })
    .where(eq(upstreamKeys.id, id))
    .returning();
  return row;
}

export async function setKeyCooldown(db: Db, id: string, until: Date): Promise<void> {
  await db.update(upstreamKeys).set({ cooldownUntil: until }).where(and(eq(upstreamKeys.id, id)));
}

export async function deleteKey(db: Db, id: string): Promise<boolean> {
  return (await db.delete(upstreamKeys).where(eq(upstreamKeys.id, id)).returning({ id: upstreamKeys.id })).length > 0;
}
