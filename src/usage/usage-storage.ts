/**
 * How much room usage data takes (issue 23): the database's size and, per usage table, its bytes
 * (pg_total_relation_size: heap, indexes, TOAST) and estimated rows (`reltuples`, kept by VACUUM
 * and ANALYZE: no count(*) over millions of rows). Sampled every `intervalMs` (default one
 * minute), never per scrape: `/metrics` reads the last sample.
 *
 * With the embedded database it also watches the data directory's file system (fs.statfs) and
 * logs a warning while it is more than 90% full. `/readyz` stays ready: a full disk is for an
 * operator to see before it stops the relay, not a reason to take it out of a load balancer.
 */
import { statfs } from "node:fs/promises";
import { sql } from "drizzle-orm";
import type { Db } from "../db/client.js";
import { resultRows } from "../db/queries/usage-labels.js";
import type { Logger } from "../log.js";

export const STORAGE_TABLES = ["usage_calls", "usage_rollups", "usage_labels", "usage_dead_letters", "audit_events"] as const;
export type StorageTable = (typeof STORAGE_TABLES)[number];

export interface StorageSample {
  databaseBytes: number;
  tables: Record<StorageTable, { bytes: number; rows: number }>;
  /** Used share of the data directory's file system, 0..1 (embedded database only). */
  diskUsed?: number;
}

export interface UsageStorageOptions {
  /** The embedded database's directory, whose disk is watched; undefined with PostgreSQL. */
  dataDir?: string | undefined;
  intervalMs?: number;
  /** Share of the disk in use past which a warning is logged (default 0.9). */
  diskWarnAt?: number;
  log?: Logger | undefined;
}

/** Between two warnings while the disk stays full. */
const WARN_EVERY_MS = 3_600_000;

export class UsageStorage {
  readonly #db: Db;
  readonly #opts: UsageStorageOptions;
  #timer: NodeJS.Timeout | undefined;
  #last: StorageSample | undefined;
  #warnedAt = 0;

  constructor(db: Db, opts: UsageStorageOptions = {}) {
    this.#db = db;
    this.#opts = opts;
  }

  /** Takes a first sample now, then one every interval. */
  start(): void {
    const sample = (): void => void this.refresh().catch((e: unknown) => this.#opts.log?.debug("storage sample failed", { err: e }));
    sample();
    this.#timer = setInterval(sample, this.#opts.intervalMs ?? 60_000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The last sample (undefined before the first one answered). */
  get last(): StorageSample | undefined {
    return this.#last;
  }

  async refresh(): Promise<StorageSample> {
    const names = sql.join(
      STORAGE_TABLES.map((t) => sql`${t}`),
      sql`, `,
    );
    const rows = resultRows<{ name: string; bytes: string | number; rows: string | number; db: string | number }>(
      await this.#db.execute(sql`
        select c.relname as name, pg_total_relation_size(c.oid)::bigint as bytes, greatest(c.reltuples, 0)::bigint as rows,
          pg_database_size(current_database())::bigint as db
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = current_schema() and c.relname in (${names})`),
    );
    const tables = Object.fromEntries(STORAGE_TABLES.map((t) => [t, { bytes: 0, rows: 0 }])) as StorageSample["tables"];
    for (const r of rows) tables[r.name as StorageTable] = { bytes: Number(r.bytes), rows: Number(r.rows) };
    const sample: StorageSample = { databaseBytes: Number(rows[0]?.db ?? 0), tables };
    if (this.#opts.dataDir !== undefined) {
      sample.diskUsed = await diskUsed(this.#opts.dataDir);
      this.#warnIfFull(sample.diskUsed);
    }
    this.#last = sample;
    return sample;
  }

  #warnIfFull(used: number): void {
    const limit = this.#opts.diskWarnAt ?? 0.9;
    if (used <= limit || Date.now() - this.#warnedAt < WARN_EVERY_MS) return;
    this.#warnedAt = Date.now();
    this.#opts.log?.warn("data directory disk nearly full", {
      usedPercent: Math.round(used * 1000) / 10,
      hint: "lower usageRetentionDays or rollupRetentionDays, run relayapi usage prune, or grow the disk",
    });
  }
}

/** Share of the file system holding `dir` in use, as `df` counts it (blocks an unprivileged user can use). */
export async function diskUsed(dir: string): Promise<number> {
  const s = await statfs(dir);
  const usable = s.blocks - s.bfree + s.bavail;
  return usable > 0 ? (s.blocks - s.bfree) / usable : 0;
}
