/**
 * Opens the database: PostgreSQL through postgres.js when a URL is given, otherwise the
 * embedded PGlite in `<dataDir>/pgdata`. Both are typed as one `Db` so queries work on either.
 *
 * The embedded database belongs to one process: the data directory is locked before PGlite
 * opens it (src/db/data-dir-lock.ts) and unlocked by close(). With a URL nothing is locked: the
 * data directory then holds at most the key files, which instances may share.
 *
 * PostgreSQL goes through a bounded pool (src/db/pg-pool.ts: pool size, wait for a connection,
 * statement timeout, application_name), plus one connection for /readyz's ping, so the probe can
 * tell a database that does not answer from a pool whose connections are all busy.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import { PACKAGE_ROOT } from "../package-root.js";
import type { EmbeddedDbServer } from "../cluster/embedded-db-server.js";
import { lockDataDir, type DataDirLock } from "./data-dir-lock.js";
import { DatabaseStartError, describeDatabaseError, PoolExhaustedError } from "./db-errors.js";
import { pglitePrepare, type Prepare } from "./prepared.js";
import * as schema from "./schema/index.js";
import { LIFTOFF_ONLY_ARGS, wasmLiftoffOnly } from "../v8-tuning.js";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Database {
  db: Db;
  driver: "pglite" | "postgres";
  /**
   * Runs a trivial query; throws when the database is unreachable, and a PoolExhaustedError when
   * it answers but every pooled connection is busy and waits for one are being refused.
   */
  ping(): Promise<void>;
  /** Server-side prepared statements for hot queries (PGlite only: src/db/prepared.ts). */
  prepare?: Prepare;
  /**
   * PostgreSQL only: runs `fn` on one connection of its own, without a statement timeout, closed
   * afterwards (migrations under an advisory lock: src/db/migrate.ts).
   */
  exclusive?<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  /**
   * PGlite only: serves this database to the workers of `serve --workers` on a Unix socket in
   * `dir` (src/cluster/embedded-db-server.ts); the caller keeps the data directory's lock.
   */
  serveWorkers?(dir: string): Promise<EmbeddedDbServer>;
  /** One readable line for a failure of this database (src/db/db-errors.ts), no password. */
  describeError(e: unknown): string;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl?: string | undefined;
  /** Where PGlite keeps its files; `memory://` style is not used: state must survive restarts. */
  dataDir: string;
  /** PostgreSQL pool size (default 10). */
  pool?: number;
  /** PostgreSQL statement_timeout; the client gives up a second later (default 5000, 0: none). */
  statementTimeoutMs?: number;
  /** Longest wait for a free pooled connection (default 1000). */
  acquireTimeoutMs?: number;
  /** Longest wait for a new connection (default 5000). */
  connectTimeoutMs?: number;
  /** Shown as `relayapi/<instance>` in pg_stat_activity (default hostname:pid). */
  instanceName?: string | undefined;
  log?: Logger | undefined;
}

/** The database settings of a Config. */
export function databaseOptions(config: Config, log?: Logger): DatabaseOptions {
  return {
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    pool: config.dbPool,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    acquireTimeoutMs: config.dbAcquireTimeoutMs,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    instanceName: config.instanceName,
    log,
  };
}

const PGLITE_SHARED_BUFFERS = "8MB";

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  if (opts.databaseUrl) return openPostgres(opts.databaseUrl, opts);
  const lock = await lockDataDir(opts.dataDir);
  try {
    return await openPglite(opts.dataDir, lock);
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** Databases reached as PostgreSQL that are PGlite (version() says so): see isServedPglite. */
const servedPglite = new WeakSet<Db>();

/**
 * True when `db` speaks PostgreSQL's protocol but is PGlite: the primary's, served to the
 * workers of `serve --workers` (src/cluster/embedded-db-server.ts). Usage batches then take the
 * form that costs PGlite least (src/db/queries/usage.ts).
 */
export function isServedPglite(db: Db): boolean {
  return servedPglite.has(db);
}

/** The health connection's own bound: /readyz waits 2 s for the whole check. */
const PING_STATEMENT_MS = 500;

/**
 * Opens the pool and checks, with one statement, that the database can be used: a missing
 * database, a refused port or a failed login stops the start in one readable line. The same
 * statement tells whether it is PGlite served by a primary (isServedPglite).
 */
async function openPostgres(url: string, opts: DatabaseOptions): Promise<Database> {
  const { default: postgres } = await import("postgres");
  const { drizzle } = await import("drizzle-orm/postgres-js");
  const { PgPool, applicationName, unixSocket } = await import("./pg-pool.js");
  const name = applicationName(opts.instanceName || `${hostname()}:${process.pid}`);
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const onTrouble = (what: string, e: Error): void => opts.log?.warn(what, { reason: describeDatabaseError(e, url) });
  const pool = new PgPool({
    url,
    size: opts.pool ?? 10,
    statementTimeoutMs: opts.statementTimeoutMs ?? 5000,
    acquireTimeoutMs: opts.acquireTimeoutMs ?? 3000,
    connectTimeoutMs,
    applicationName: name,
    onTrouble,
  });
  const health = new PgPool({ url, size: 1, statementTimeoutMs: PING_STATEMENT_MS, acquireTimeoutMs: 1500, connectTimeoutMs, applicationName: name });
  const db = drizzle(pool.client, { schema }) as unknown as Db;
  const close = async (): Promise<void> => void (await Promise.all([pool.close(), health.close()]));
  try {
    const [row] = await pool.run((sql) => sql<{ v: string }[]>`select version() as v`);
    if (/\bPGlite\b/.test(String(row?.v))) servedPglite.add(db);
  } catch (e) {
    await close();
    throw new DatabaseStartError(e, url);
  }
  return {
    db,
    driver: "postgres",
    ping: async () => {
      // Any failure of the ping's own connection is "unreachable", its wait included.
      await health
        .run((sql) => sql`select 1`)
        .catch((e: unknown) => {
          throw Object.assign(new Error(`database unreachable: ${describeDatabaseError(e, url)}`), { code: "DATABASE_UNREACHABLE" });
        });
      if (pool.exhausted()) throw new PoolExhaustedError(pool.stats().size, opts.acquireTimeoutMs ?? 3000);
    },
    async exclusive(fn) {
      const socket = unixSocket(url);
      const sql = postgres(socket.url, {
        ...(socket.path === undefined ? {} : { path: socket.path }),
        max: 1,
        onnotice: () => {},
        prepare: false,
        fetch_types: false,
        connect_timeout: connectTimeoutMs / 1000,
        // No statement_timeout (the server's own default applies): DDL on a large table may take
        // longer than any request's statement, and waiting for the lock has no bound either.
        connection: { application_name: name },
      });
      try {
        return await fn(drizzle(sql, { schema }) as unknown as Db);
      } finally {
        await sql.end({ timeout: 5 });
      }
    },
    describeError: (e) => describeDatabaseError(e, url),
    close,
  };
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
  // Under load the usage log's new pages fill whatever the buffers hold: 8 MB instead of 16
  // kept the relay's touched WASM memory at 24 MB instead of 32 at ~12,000 calls/s, with the
  // same CPU per call within the machine's noise (3 alternating pairs, issue 22).
  const startParams = [...PGlite.defaultStartParams, "-c", `shared_buffers=${PGLITE_SHARED_BUFFERS}`];
  chmodSync(dataDir, 0o700);
  chmodSync(dir, 0o700);
  if (!existsSync(join(dir, "PG_VERSION"))) await initInChild(dir, startParams);
  // relaxedDurability only stops PGlite awaiting its file-system sync after each query, a no-op
  // on Node's file system (every write already reached the OS): half the CPU of a one-row update.
  const client = await PGlite.create(dir, { startParams, relaxedDurability: true });
  makePrivate(dir);
  // Once PGlite is served to workers (serveWorkers), this process's own statements wait their
  // turn in the server's queue: PGlite has one session, and a statement of ours between a
  // worker's Parse and Bind, or inside its transaction, would run in the middle of it.
  let turn: <T>(run: () => Promise<T>) => Promise<T> = (run) => run();
  const inTurn = new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === "query" || prop === "exec" || prop === "transaction") return (...args: unknown[]) => turn(async () => fn.apply(target, args));
      return fn.bind(target);
    },
  });
  const db = drizzle(inTurn, { schema }) as unknown as Db;
  return {
    db,
    driver: "pglite",
    ping: async () => void (await client.query("select 1")),
    prepare: pglitePrepare(client),
    serveWorkers: async (socketDir) => {
      const server = await (await import("../cluster/embedded-db-server.js")).serveEmbeddedDb(client, socketDir);
      turn = server.local;
      return {
        ...server,
        close: async () => {
          await server.close();
          turn = (run) => run();
        },
      };
    },
    describeError: (e) => describeDatabaseError(e),
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
