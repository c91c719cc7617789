/**
 * `relayapi serve --workers N` (issue 22.3): the primary forks N workers that share the one
 * listening port (node:cluster: Node 20 has no reusePort) and nothing else but the database and,
 * when set, Redis. Each worker is a whole relay, exactly one more instance as on PostgreSQL:
 * caps stay exact through the leases, revocations arrive by the instances' poll (within 1 s).
 *
 * On the embedded database the primary owns PGlite (it holds the data directory's lock, runs
 * the migrations) and serves it to the workers on a Unix socket in the data directory
 * (src/cluster/embedded-db-server.ts). The primary serves no request itself.
 *
 * A worker that dies is forked again (after 1 s, doubling while it keeps dying within a minute
 * of its start, at most 30 s). SIGTERM/SIGINT/SIGHUP asks every worker to shut down as one relay does
 * (drain, grace, usage written or spilled); a second signal hurries them. The primary exits when
 * every worker has, after closing the embedded database; a worker still alive past the deadline
 * is killed. A worker whose primary disappears shuts itself down (src/main.ts). A worker whose
 * event loop stops answering the primary's pings for 30 s is killed and replaced
 * (src/cluster/worker-heartbeat.ts).
 */
import cluster, { type Worker } from "node:cluster";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { EmbeddedDbServer } from "./embedded-db-server.js";
import { SOCKET_NAME } from "./embedded-db-server.js";
import { serveClusterMetrics } from "./cluster-metrics.js";
import { HURRY_MESSAGE, SHUTDOWN_MESSAGE } from "./messages.js";
import { autoWorkers } from "./cpu-quota.js";
import { watchWorkers } from "./worker-heartbeat.js";
import type { Config } from "../config.js";
import type { Database } from "../db/client.js";
import { loadAdminKey, loadMasterKey } from "../keys/key-files.js";
import type { Logger } from "../log.js";

const RESTART_MIN_MS = 1_000;
const RESTART_MAX_MS = 30_000;
/** A worker that lived this long was healthy: its next restart starts from the shortest delay. */
const HEALTHY_MS = 60_000;
/** Unix socket paths are limited to 107 bytes (sun_path). */
const MAX_SOCKET_PATH = 100;

export interface PrimaryHooks {
  /** Called once, when the first worker listens: the URL clients use. */
  onListening(url: string): void;
  /** The signals that shut down (src/main.ts SHUTDOWN_SIGNALS: SIGTERM, SIGINT, SIGHUP). */
  signals: readonly NodeJS.Signals[];
  /** Bounds the shutdown: after it, workers still alive are killed. */
  shutdownDeadlineMs: number;
}

/**
 * glibc's malloc raises its mmap threshold to the size of the largest mmapped block freed so far
 * (up to 32 MB), and its trim threshold to twice that; a process that once freed a few large
 * buffers then keeps every later freed byte below them. Measured with `npm run bench` (issue
 * 22): with the threshold fixed at its default (`MALLOC_MMAP_THRESHOLD_=131072`) a relay's peak
 * RSS at load was 139 instead of 157 MB on PostgreSQL and 221 instead of 235 on PGlite, the rest
 * of the run alike within the box's noise. It can only be set before a process starts, so the
 * primary sets it for its workers (an operator's own setting wins; other C libraries ignore it)
 * and docs/operations.md recommends it for a single process.
 */
export function mallocTuning(given: NodeJS.ProcessEnv): Record<string, string> {
  if (process.platform !== "linux" || Object.keys(given).some((k) => k.startsWith("MALLOC_"))) return {};
  return { MALLOC_MMAP_THRESHOLD_: "131072" };
}

export async function servePrimary(config: Config, log: Logger, hooks: PrimaryHooks): Promise<void> {
  // Generated key files exist before the workers start, so they never race to create two.
  loadAdminKey(config.adminKey, config.dataDir);
  loadMasterKey(config.masterKey, config.dataDir);
  const embedded = config.databaseUrl === undefined ? await openEmbedded(config, log) : undefined;
  const env: Record<string, string> = {
    ...mallocTuning(process.env),
    ...(embedded === undefined
      ? {}
      : {
          DATABASE_URL: `postgres://postgres@localhost/postgres?host=${encodeURIComponent(embedded.socketDir)}`,
          RELAYAPI_AUTO_MIGRATE: "false", // the primary migrated
          RELAYAPI_USAGE_MAINTENANCE: "false", // the primary prunes and vacuums its PGlite
        }),
  };

  let stopping = false;
  const started = new Map<number, number>();
  let restartDelay = RESTART_MIN_MS;
  const fork = (): Worker => {
    const w = cluster.fork(env);
    started.set(w.id, Date.now());
    return w;
  };
  // A worker whose event loop stopped never exits: killed here, it is replaced as any that died.
  const heartbeat = watchWorkers((worker, silentMs) => {
    log.error("worker unresponsive; killed", { worker: worker.id, pid: worker.process.pid, silentMs });
    worker.process.kill("SIGKILL");
  });
  let announced = false;
  cluster.on("listening", (worker, address) => {
    // A worker that started after the shutdown began may have missed its request (sent before
    // it listened for requests): asked again, it drains at once.
    if (stopping) worker.send(SHUTDOWN_MESSAGE);
    else heartbeat.watch(worker);
    if (announced) return;
    announced = true;
    const host = address.address && address.address !== "::" && address.address !== "0.0.0.0" ? address.address : config.host;
    hooks.onListening(`http://${host.includes(":") ? `[${host}]` : host}:${address.port}`);
  });
  cluster.on("exit", (worker, code, signal) => {
    const lived = Date.now() - (started.get(worker.id) ?? 0);
    started.delete(worker.id);
    if (stopping) return;
    if (!announced) {
      // No worker ever started (a bad setting, a database that refuses): the worker printed
      // why; starting more would only repeat it.
      log.error("a worker failed to start; stopping", { worker: worker.id, code, signal });
      stop("worker failed to start", 1);
      return;
    }
    restartDelay = lived >= HEALTHY_MS ? RESTART_MIN_MS : Math.min(RESTART_MAX_MS, restartDelay);
    log.error("worker exited; starting another", { worker: worker.id, code, signal, restartInMs: restartDelay });
    const delay = restartDelay;
    restartDelay = Math.min(RESTART_MAX_MS, restartDelay * 2);
    setTimeout(() => {
      if (!stopping) fork();
    }, delay).unref();
  });

  serveClusterMetrics();
  // More workers than cores only adds memory and contention (every worker is a whole relay).
  const cores = autoWorkers();
  if (config.workers > cores)
    log.warn("more workers than cores", { workers: config.workers, cores, detail: "each worker is a whole relay: --workers auto starts one per core" });
  for (let i = 0; i < config.workers; i++) fork();
  log.info("primary started", { workers: config.workers, pid: process.pid, database: embedded ? `pglite:${config.dataDir} (served to workers)` : "postgres" });

  const stop = (signal: string, exitCode = 0): void => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    if (stopping) {
      log.warn("asking workers to shut down now", { signal });
      for (const w of workers) w.send(HURRY_MESSAGE);
      return;
    }
    stopping = true;
    // Draining workers may be slow to answer; the shutdown deadline bounds them instead.
    heartbeat.stop();
    const t0 = Date.now();
    log.info("shutting down workers", { signal, workers: workers.length });
    for (const w of workers) w.send(SHUTDOWN_MESSAGE);
    const deadline = setTimeout(() => {
      for (const w of Object.values(cluster.workers ?? {})) {
        if (w === undefined) continue;
        log.error("worker overran the shutdown deadline; killed", { worker: w.id });
        w.process.kill("SIGKILL");
      }
    }, hooks.shutdownDeadlineMs);
    deadline.unref();
    void allExited().then(async () => {
      clearTimeout(deadline);
      let code = exitCode;
      if (embedded) {
        try {
          await embedded.close();
        } catch (e) {
          log.error("closing the embedded database failed", { err: e });
          code = 1;
        }
      }
      log.info("shut down", { ms: Date.now() - t0 });
      process.exit(code);
    });
  };
  for (const signal of hooks.signals) process.on(signal, () => stop(signal));
}

function allExited(): Promise<void> {
  return new Promise((done) => {
    const check = (): void => {
      if (Object.values(cluster.workers ?? {}).every((w) => w === undefined || w.isDead())) {
        cluster.off("exit", check);
        done();
      }
    };
    cluster.on("exit", check);
    check();
  });
}

interface Embedded {
  socketDir: string;
  close(): Promise<void>;
}

/** Opens PGlite (locking the data directory), migrates, and serves it on a Unix socket. */
async function openEmbedded(config: Config, log: Logger): Promise<Embedded> {
  // Loaded here, as the relay is in the workers only (src/main.ts): on PostgreSQL the primary
  // opens no database, and it is a process of its own beside N relays.
  const { databaseOptions, openDatabase } = await import("../db/client.js");
  const { migrateDatabase, requireMigrations } = await import("../db/migrate.js");
  const { startUsageMaintenance } = await import("../usage/usage-maintenance.js");
  const database: Database = await openDatabase(databaseOptions(config, log));
  let server: EmbeddedDbServer | undefined;
  let scratch: string | undefined;
  try {
    await (config.autoMigrate ? migrateDatabase(database, log) : requireMigrations(database));
    let socketDir = resolve(config.dataDir);
    // A deep data directory would overflow sun_path: a private directory under tmp instead.
    if (join(socketDir, SOCKET_NAME).length > MAX_SOCKET_PATH) socketDir = scratch = mkdtempSync(join(tmpdir(), "relayapi-"));
    server = await database.serveWorkers!(socketDir);
    const served = server;
    // Retention and VACUUM on the one PGlite, from here: src/usage/usage-maintenance.ts.
    const maintenance = startUsageMaintenance(database, config, log);
    return {
      socketDir,
      close: async () => {
        await maintenance.stop();
        await served.close();
        await database.close();
        if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await server?.close();
    await database.close();
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
    throw e;
  }
}
