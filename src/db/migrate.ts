/** Applies the committed SQL migrations in drizzle/; running it again is a no-op. */
import { fileURLToPath } from "node:url";
import type { Database } from "./client.js";

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

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
