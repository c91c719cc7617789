/**
 * Applies the committed SQL migrations in drizzle/; running it again is a no-op. Also tells how
 * many the journal holds and how many a database has applied, for `/readyz`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { count } from "drizzle-orm";
import { pgSchema, serial } from "drizzle-orm/pg-core";
import { PACKAGE_ROOT } from "../package-root.js";
import type { Database, Db } from "./client.js";

export const MIGRATIONS_FOLDER = join(PACKAGE_ROOT, "drizzle");

/**
 * drizzle's own bookkeeping table (one row per applied migration). Declared here, not in
 * schema/, so drizzle-kit never generates it.
 */
const appliedMigrations = pgSchema("drizzle").table("__drizzle_migrations", { id: serial("id").primaryKey() });

export async function migrateDatabase(database: Database): Promise<void> {
  if (database.driver === "postgres") {
    const { migrate } = await import("drizzle-orm/postgres-js/migrator");
    // postgres-js migrator needs the postgres-js flavoured db; the runtime object is one.
    await migrate(database.db as never, { migrationsFolder: MIGRATIONS_FOLDER });
  } else {
    const { migrate } = await import("drizzle-orm/pglite/migrator");
    await migrate(database.db as never, { migrationsFolder: MIGRATIONS_FOLDER });
  }
}

/** Migrations this code base ships: the entries of drizzle/meta/_journal.json. */
export function expectedMigrations(folder = MIGRATIONS_FOLDER): number {
  const journal = JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as { entries: unknown[] };
  return journal.entries.length;
}

/** Migrations the database has applied; throws when it cannot answer (or was never migrated). */
export async function appliedMigrationCount(db: Db): Promise<number> {
  const [row] = await db.select({ n: count() }).from(appliedMigrations);
  return row?.n ?? 0;
}
