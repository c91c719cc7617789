/**
 * `relayapi serve` and `relayapi migrate`: commands that run the relay's own code locally.
 * `migrate` then `serve --no-auto-migrate` is the split for a deploy that runs migrations as a
 * job of its own; plain `serve` migrates at start (under an advisory lock on PostgreSQL).
 */
import { LOG_LEVELS, loadConfig, parseWorkers, printableConfig, type ConfigOverrides, type LoadOptions, type LogLevel } from "../config.js";
import { createLogger } from "../log.js";
import { intFlag, listFlag, parse, UsageError } from "./args.js";

const STORAGE_FLAGS = {
  config: { type: "string" },
  "data-dir": { type: "string" },
  "database-url": { type: "string" },
} as const;

const SERVE_FLAGS = {
  ...STORAGE_FLAGS,
  host: { type: "string" },
  port: { type: "string" },
  "log-level": { type: "string" },
  "redis-url": { type: "string" },
  "trust-proxy": { type: "string" },
  "ip-rpm": { type: "string" },
  "print-config": { type: "boolean" },
  "no-auto-migrate": { type: "boolean" },
  workers: { type: "string" },
} as const;

interface StorageValues {
  config?: string | undefined;
  "data-dir"?: string | undefined;
  "database-url"?: string | undefined;
}

function storageOverrides(values: StorageValues): ConfigOverrides {
  const o: ConfigOverrides = {};
  if (values["data-dir"] !== undefined) o.dataDir = values["data-dir"];
  if (values["database-url"] !== undefined) o.databaseUrl = values["database-url"];
  return o;
}

function loadOptions(values: StorageValues): LoadOptions {
  return values.config === undefined ? {} : { configFile: values.config };
}

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, SERVE_FLAGS);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const overrides = storageOverrides(values);
  if (values.host !== undefined) overrides.host = values.host;
  const port = intFlag("port", values.port);
  if (port !== undefined) overrides.port = port;
  const level = values["log-level"];
  if (level !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
    overrides.logLevel = level as LogLevel;
  }
  if (values["redis-url"] !== undefined) overrides.redisUrl = values["redis-url"];
  if (values["trust-proxy"] !== undefined) overrides.trustProxy = listFlag(values["trust-proxy"]);
  const ipRpm = intFlag("ip-rpm", values["ip-rpm"]);
  if (ipRpm !== undefined) overrides.ipRpm = ipRpm;
  if (values["no-auto-migrate"]) overrides.autoMigrate = false;
  if (values.workers !== undefined) {
    try {
      overrides.workers = parseWorkers(values.workers, "--workers");
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }

  if (values["print-config"]) {
    const config = loadConfig(overrides, process.env, loadOptions(values));
    console.log(JSON.stringify(printableConfig(config), null, 2));
    return;
  }
  privateFiles();
  // Loaded here, not at the top: --print-config needs none of the relay.
  const { serve } = await import("../main.js");
  await serve(overrides, loadOptions(values));
}

export async function migrateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, STORAGE_FLAGS);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const config = loadConfig(storageOverrides(values), process.env, loadOptions(values));
  privateFiles();
  // Info lines ("waiting for another instance ...") on stderr, as serve writes them.
  const log = createLogger(config.logLevel);
  // Loaded here: the primary of `serve --workers` on PostgreSQL opens no database.
  const { databaseOptions, openDatabase } = await import("../db/client.js");
  const { migrateDatabase } = await import("../db/migrate.js");
  const database = await openDatabase(databaseOptions(config, log));
  try {
    await migrateDatabase(database, log);
    console.log(`migrations applied (${database.driver})`);
  } finally {
    await database.close();
  }
}

/**
 * What the relay writes (the database's files, key files, the lock) is its user's alone
 * (issue 17, finding 7): PGlite makes its directories through the process's umask (files it
 * chmods itself; src/db/client.ts puts those right).
 */
function privateFiles(): void {
  process.umask(0o077);
}
