/** Queries on `key_pools` and `upstream_keys`. Keys leave the database only encrypted. */
import { and, count, eq, gt, sql } from "drizzle-orm";
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

/** Enables (with a clean slate: no rest, no strikes) or disables a key. */
export async function setKeyEnabled(db: Db, id: string, enabled: boolean, reason: string): Promise<UpstreamKeyRow | undefined> {
  const [row] = await db
    .update(upstreamKeys)
    .set(enabled ? { enabled, disabledReason: "", cooldownUntil: null, authStrikes: 0 } : { enabled, disabledReason: reason })
    .where(eq(upstreamKeys.id, id))
    .returning();
  return row;
}

/**
 * One more strike against an enabled key (an answer that proved it bad), disabling it with
 * `reason` in the same statement once the strikes reach `limit`: atomic across instances.
 * Undefined when the key is gone or already disabled.
 */
export async function addKeyStrike(db: Db, id: string, limit: number, reason: string): Promise<{ authStrikes: number; enabled: boolean } | undefined> {
  const strikes = sql`${upstreamKeys.authStrikes} + 1`;
  const [row] = await db
    .update(upstreamKeys)
    .set({
      authStrikes: strikes,
      enabled: sql`${strikes} < ${limit}`,
      disabledReason: sql`case when ${strikes} < ${limit} then ${upstreamKeys.disabledReason} else ${reason} end`,
    })
    .where(and(eq(upstreamKeys.id, id), eq(upstreamKeys.enabled, true)))
    .returning({ authStrikes: upstreamKeys.authStrikes, enabled: upstreamKeys.enabled });
  return row;
}

/** A key answered well: its strikes start again from 0. */
export async function clearKeyStrikes(db: Db, id: string): Promise<void> {
  await db
    .update(upstreamKeys)
    .set({ authStrikes: 0 })
    .where(and(eq(upstreamKeys.id, id), gt(upstreamKeys.authStrikes, 0)));
}

export async function deleteKey(db: Db, id: string): Promise<boolean> {
  return (await db.delete(upstreamKeys).where(eq(upstreamKeys.id, id)).returning({ id: upstreamKeys.id })).length > 0;
}
