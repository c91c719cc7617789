/** The admin's price overrides (`prices`, issue 24); the shipped table lives in src/pricing. */
import { and, asc, eq, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { prices, type PriceRow } from "../schema/index.js";

export async function listPriceOverrides(db: Db): Promise<PriceRow[]> {
  return db.select().from(prices).orderBy(asc(prices.provider), asc(prices.model));
}

export async function upsertPrice(db: Db, row: Omit<PriceRow, "updatedAt">): Promise<PriceRow> {
  const [stored] = await db
    .insert(prices)
    .values(row)
    .onConflictDoUpdate({
      target: [prices.provider, prices.model],
      set: {
        input: row.input,
        cachedInput: row.cachedInput,
        cacheWrite: row.cacheWrite,
        output: row.output,
        audioInput: row.audioInput,
        audioOutput: row.audioOutput,
        updatedAt: sql`now()`,
      },
    })
    .returning();
  if (!stored) throw new Error("upsert returned no row");
  return stored;
}

/** Deletes one override; false when there was none. */
export async function deletePrice(db: Db, provider: string, model: string): Promise<boolean> {
  const deleted = await db
    .delete(prices)
    .where(and(eq(prices.provider, provider), eq(prices.model, model)))
    .returning({ model: prices.model });
  return deleted.length > 0;
}
