/** `relayapi serve` and `relayapi migrate`: commands that run the relay's own code locally. */
import { loadConfig, type ConfigOverrides } from "../config.js";
import { openDatabase } from "../db/client.js";
import { migrateDatabase } from "../db/migrate.js";
import { serve } from "../main.js";
import { intFlag, parse, UsageError } from "./args.js";

const STORAGE_FLAGS = {
  "data-dir": { type: "string" },
  "database-url": { type: "string" },
} as const;

function storageOverrides(values: { "data-dir"?: string | undefined; "database-url"?: string | undefined }): ConfigOverrides {
  const o: ConfigOverrides = {};
  if (values["data-dir"] !== undefined) o.dataDir = values["data-dir"];
  if (values["database-url"] !== undefined) o.databaseUrl = values["database-url"];
  return o;
}

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...STORAGE_FLAGS, host: { type: "string" }, port: { type: "string" } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const overrides = storageOverrides(values);
  if (values.host !== undefined) overrides.host = values.host;
  const port = intFlag("port", values.port);
  if (port !== undefined) overrides.port = port;
  await serve(overrides);
}

export async function migrateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, STORAGE_FLAGS);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const config = loadConfig(storageOverrides(values));
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await migrateDatabase(database);
    console.log(`migrations applied (${database.driver})`);
  } finally {
    await database.close();
  }
}
