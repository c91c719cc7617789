/**
 * The background side of usage data (issue 23), started once by build(): retention passes
 * (usage-pruner.ts) and storage samples for /metrics and the disk warning (usage-storage.ts).
 * On PGlite, which has no autovacuum, it also vacuums the raw and roll-up tables every
 * `vacuumIntervalMs`: a VACUUM reads only the pages changed since the previous one, so frequent
 * ones stay short, and pruning later finds the rest of the table already marked all-visible.
 */
import type { Config } from "../config.js";
import type { Database } from "../db/client.js";
import { vacuumTable } from "../db/queries/usage-prune.js";
import type { Logger } from "../log.js";
import { UsagePruner, type RetentionDays } from "./usage-pruner.js";
import { UsageStorage } from "./usage-storage.js";

export interface UsageMaintenance {
  pruner: UsagePruner;
  storage: UsageStorage;
  retention: RetentionDays;
  stop(): Promise<void>;
}

export interface UsageMaintenanceOptions {
  /** Between background prune passes (default one hour; 0: none). */
  pruneIntervalMs?: number;
  /** First pass this long after start (default one minute): not in the start-up's way. */
  firstPruneMs?: number;
  /** PGlite only: between two VACUUMs of the usage tables (default 10 s; 0: none). */
  vacuumIntervalMs?: number;
  /**
   * False: no background prune and no VACUUM (on-demand prunes still work). The workers of an
   * embedded `serve --workers` leave both to the primary, which owns the one PGlite: they reach
   * it as PostgreSQL, and its one session would let every worker take the prune lock at once.
   */
  background?: boolean;
}

export function startUsageMaintenance(database: Database, config: Config, log: Logger | undefined, opts: UsageMaintenanceOptions = {}): UsageMaintenance {
  const retention: RetentionDays = { usage: config.usageRetentionDays, rollups: config.rollupRetentionDays, audit: config.auditRetentionDays };
  const background = opts.background ?? true;
  const pruner = new UsagePruner(database, { retention, intervalMs: background ? (opts.pruneIntervalMs ?? 3_600_000) : 0, log });
  const storage = new UsageStorage(database.db, { dataDir: database.driver === "pglite" ? config.dataDir : undefined, log });
  storage.start();
  const timers: NodeJS.Timeout[] = [];
  if (!background) return { pruner, storage, retention, stop: async () => Promise.all([storage.stop(), pruner.stop()]).then(() => {}) };
  const firstPrune = setTimeout(() => void pruner.prune().catch((e: unknown) => log?.warn("usage prune failed", { err: e })), opts.firstPruneMs ?? 60_000);
  firstPrune.unref();
  timers.push(firstPrune);
  const vacuumMs = opts.vacuumIntervalMs ?? 10_000;
  let vacuuming: Promise<void> | undefined;
  if (database.driver === "pglite" && vacuumMs > 0) {
    const vacuum = setInterval(() => {
      if (vacuuming) return;
      vacuuming = (async () => {
        await vacuumTable(database.db, "usage_calls");
        await vacuumTable(database.db, "usage_rollups");
      })()
        .catch((e: unknown) => log?.debug("usage vacuum failed", { err: e }))
        .finally(() => (vacuuming = undefined));
    }, vacuumMs);
    vacuum.unref();
    timers.push(vacuum);
  }
  return {
    pruner,
    storage,
    retention,
    async stop() {
      for (const t of timers) clearTimeout(t);
      storage.stop();
      await Promise.all([pruner.stop(), vacuuming]);
    },
  };
}
