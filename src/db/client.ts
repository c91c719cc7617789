/**
 * Opens the database: PostgreSQL through postgres.js when a URL is given, otherwise the
 * embedded PGlite in `<dataDir>/pgdata`. Both are typed as one `Db` so queries work on either.
 *
 * The embedded database belongs to one process: the data directory is locked before PGlite
 * opens it (src/db/data-dir-lock.ts) and unlocked by close(). With a URL nothing is locked: the
 * data directory then holds at most the key files, which instances may share.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { PACKAGE_ROOT } from "../package-root.js";
import { lockDataDir, type DataDirLock } from "./data-dir-lock.js";
import { pglitePrepare, type Prepare } from "./prepared.js";
import * as schema from "./schema/index.js";
import { LIFTOFF_ONLY_ARGS, wasmLiftoffOnly } from "../v8-tuning.js";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Database {
  db: Db;
  driver: "pglite" | "postgres";
  /** Runs a trivial query; throws when the database is unreachable. */
  ping(): Promise<void>;
  /** Server-side prepared statements for hot queries (PGlite only: src/db/prepared.ts). */
  prepare?: Prepare;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl?: string | undefined;
  /** Where PGlite keeps its files; `memory://` style is not used: state must survive restarts. */
  dataDir: string;
  /** Pool size for PostgreSQL. */
  maxConnections?: number;
}

const PGLITE_SHARED_BUFFERS = "16MB";

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) {
    const { default: postgres } = await import("postgres");
    const { drizzle } = await import("drizzle-orm/postgres-js");
    const client = postgres(opts.databaseUrl, {
      max: opts.maxConnections ?? 10,
      onnotice: () => {},
      // postgres.js's automatic server-side prepared statements left a connection waiting in
      // ClientRead (a request never answered) under bursts from two relays in one process;
      // the hot statements are still built once by drizzle's prepare().
      prepare: false,
      connect_timeout: 5,
    });
    const db = drizzle(client, { schema }) as unknown as Db;
    return {
      db,
      driver: "postgres",
      ping: async () => void (await client`select 1`),
      close: () => client.end({ timeout: 5 }),
    };
  }
  const lock = await lockDataDir(opts.dataDir);
  try {
    return await openPglite(opts.dataDir, lock);
  } catch (e) {
    lock.release();
    throw e;
  }
}

async function openPglite(dataDir: string, lock: DataDirLock): Promise<Database> {
  wasmLiftoffOnly(); // before PGlite's WASM is compiled: ~60 MB less RSS (src/v8-tuning.ts)
  const { PGlite } = await import("@electric-sql/pglite");
  const { drizzle } = await import("drizzle-orm/pglite");
  const dir = join(dataDir, "pgdata");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // PGlite's WASM heap only grows. Its 128 MB of shared buffers are sized for a server, not for
  // a relay's few hot rows (tokens, keys) and an append-only log; and initdb in a new data
  // directory leaves ~450 MB touched, so a new directory is initialised by a short-lived child
  // process (src/db/pglite-initdb.js) whose memory goes when it exits. Measured, RSS after
  // opening: 688 MB with initdb in-process, 345 MB on a reopen, 241 MB with 16 MB buffers.
  const startParams = [...PGlite.defaultStartParams, "-c", `shared_buffers=${PGLITE_SHARED_BUFFERS}`];
  chmodSync(dataDir, 0o700);
  chmodSync(dir, 0o700);
  if (!existsSync(join(dir, "PG_VERSION"))) await initInChild(dir, startParams);
  // relaxedDurability only stops PGlite awaiting its file-system sync after each query, a no-op
  // on Node's file system (every write already reached the OS): half the CPU of a one-row update.
  const client = await PGlite.create(dir, { startParams, relaxedDurability: true });
  makePrivate(dir);
  const db = drizzle(client, { schema }) as unknown as Db;
  return {
    db,
    driver: "pglite",
    ping: async () => void (await client.query("select 1")),
    prepare: pglitePrepare(client),
    close: async () => {
      try {
        await client.close();
        makePrivate(dir); // the statistics files PostgreSQL writes on its way out
      } finally {
        lock.release();
      }
    },
  };
}

/**
 * The counters and keys are the relay's alone (issue 17, finding 7). The data directory and
 * pgdata are 0700 before PGlite runs, so nothing inside is reachable by other users; and the
 * files are made 0600 (directories 0700) after PGlite opens and after it closes, because its
 * file system applies its own umask (022, not the process's) with an explicit chmod: initdb's
 * files come out 0666, files written through fopen (relcache init at start-up, statistics at
 * shutdown) 0644. Relation and WAL files are 0600 by PostgreSQL's own rule. ~1,000 chmod calls.
 */
function makePrivate(pgdata: string): void {
  for (const e of readdirSync(pgdata, { withFileTypes: true, recursive: true })) {
    if (e.isSymbolicLink()) continue;
    chmodSync(join(e.parentPath, e.name), e.isDirectory() ? 0o700 : 0o600);
  }
}

function initInChild(dir: string, startParams: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const script = join(PACKAGE_ROOT, "src", "db", "pglite-initdb.js");
    const child = spawn(process.execPath, [...LIFTOFF_ONLY_ARGS, script, dir, JSON.stringify(startParams)], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => void (stderr = (stderr + d).slice(-2000)));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`PGlite initdb exited with ${code}: ${stderr.trim()}`))));
  });
}
