/** Queries on `providers` (custom providers only; built-ins live in src/providers/). */
import { eq, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { providers, type ProviderRow } from "../schema/index.js";

export async function listCustomProviders(db: Db): Promise<ProviderRow[]> {
  return db.select().from(providers).orderBy(providers.id);
}

export async function upsertProvider(db: Db, row: Omit<ProviderRow, "createdAt" | "updatedAt">): Promise<ProviderRow> {
  const [stored] = await db
    .insert(providers)
    .values(row)
    .onConflictDoUpdate({
      target: providers.id,
      set: {
        baseUrl: row.baseUrl,
        authStyle: row.authStyle,
        authName: row.authName,
        defaultHeaders: row.defaultHeaders,
        shape: row.shape,
        updatedAt: sql`now()`,
      },
    })
    .returning();
  if (!stored) throw new Error("upsert returned no row");
  return stored;
}

export async function deleteProvider(db: Db, id: string): Promise<boolean> {
  const deleted = await db.delete(providers).where(eq(providers.id, id)).returning({ id: providers.id });
  return deleted.length > 0;
}
