/**
 * Applies the committed SQL migrations in drizzle/; running it again is a no-op. Also tells how
 * many the journal holds and how many a database has applied, for `/readyz` and for a start
 * without auto-migration.
 *
 * On PostgreSQL, instances started at once on an empty database all ran CREATE TABLE and all
 * but one crashed (issue 19, finding 3): migrations now run under a session advisory lock on one
 * connection of their own. One instance migrates; the others wait for the lock, then find
 * nothing left to do. The lock goes with the connection, so a crash mid-migration frees it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { count, sql } from "drizzle-orm";
import { pgSchema, serial } from "drizzle-orm/pg-core";
import type { Logger } from "../log.js";
import { PACKAGE_ROOT } from "../package-root.js";
import type { Database, Db } from "./client.js";
import { DatabaseStartError, driverError } from "./db-errors.js";

export const MIGRATIONS_FOLDER = join(PACKAGE_ROOT, "drizzle");

/**
 * drizzle's own bookkeeping table (one row per applied migration). Declared here, not in
 * schema/, so drizzle-kit never generates it.
 */
const appliedMigrations = pgSchema("drizzle").table("__drizzle_migrations", { id: serial("id").primaryKey() });

/** The advisory lock's key: "relay" in ASCII, fixed so every version of the relay agrees. */
const MIGRATION_LOCK = sql.raw("491496040825");

/** Applies what is missing; failures are one readable line (DatabaseStartError). */
export async function migrateDatabase(database: Database, log?: Logger): Promise<void> {
  try {
    if (database.exclusive) {
      const { migrate } = await import("drizzle-orm/postgres-js/migrator");
      await database.exclusive(async (db) => {
        const [row] = (await db.execute(sql`select pg_try_advisory_lock(${MIGRATION_LOCK}) as locked`)) as unknown as { locked: boolean }[];
        if (!row?.locked) {
          log?.info("waiting for another instance to finish the database migrations");
          await db.execute(sql`select pg_advisory_lock(${MIGRATION_LOCK})`);
        }
        try {
          // The postgres-js migrator needs the postgres-js flavoured db; the runtime object is one.
          await migrate(db as never, { migrationsFolder: MIGRATIONS_FOLDER });
        } finally {
          await db.execute(sql`select pg_advisory_unlock(${MIGRATION_LOCK})`);
        }
      });
    } else {
      const { migrate } = await import("drizzle-orm/pglite/migrator");
      await migrate(database.db as never, { migrationsFolder: MIGRATIONS_FOLDER });
    }
  } catch (e) {
    throw e instanceof DatabaseStartError ? e : new DatabaseStartError(e, undefined, database.describeError(e));
  }
}

/**
 * For `serve --no-auto-migrate`: refuses to start, in words, when the database lacks migrations
 * this build ships (rather than wait: a forgotten `relayapi migrate` should be seen at once,
 * and an orchestrator restarts the instance after the migration job has run).
 */
export async function requireMigrations(database: Database): Promise<void> {
  let applied: number;
  try {
    applied = await appliedMigrationCount(database.db);
  } catch (e) {
    // No drizzle schema or table: a database that was never migrated.
    if (!/^(3F000|42P01)$/.test(driverError(e).code ?? "")) throw new DatabaseStartError(e, undefined, database.describeError(e));
    applied = 0;
  }
  const expected = expectedMigrations();
  if (applied < expected) {
    throw new Error(
      `database migrations not applied (${applied}/${expected}) and auto-migration is off: run relayapi migrate first, or serve without --no-auto-migrate`,
    );
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
