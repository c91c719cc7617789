/**
 * Retention (issue 23): raw usage rows older than `usageRetentionDays`, roll-ups older than
 * `rollupRetentionDays` and audit rows older than `auditRetentionDays` are deleted (0 keeps
 * them forever), in the background every `intervalMs` and on demand (`relayapi usage prune`).
 *
 * Work is cut into small statements (src/db/queries/usage-prune.ts). On PGlite each runs on the
 * event loop, so between two the pruner yields, and the size of the next slice follows the time
 * the last one took (aiming at `sliceMs`): measured in test/usage-retention.test.ts, pruning a
 * million rows held the loop at most 13.5 ms alone on a quiet machine (p99 4.6 ms); beside other
 * busy processes on the same cores single statements stretch (up to 62 ms seen in the full test
 * suite). PGlite has no autovacuum: each slice is followed
 * by a VACUUM of what it changed, so the space is reused and the disk stays bounded.
 *
 * On PostgreSQL one instance prunes at a time: the pass runs on a connection of its own holding
 * `pg_try_advisory_lock`; an instance that does not get it skips the pass (autovacuum reclaims).
 *
 * What a pass dropped is logged and written to the audit log (`usage.pruned`).
 */
import { pruneWindows } from "../db/queries/quota-counter.js";
import { setImmediate as yieldLoop } from "node:timers/promises";
import { sql } from "drizzle-orm";
import type { Database, Db } from "../db/client.js";
import { insertAuditEvent } from "../db/queries/audit.js";
import { pruneAudit, pruneRawPages, pruneRollups, rawPageCount, vacuumTable, type PrunedTable } from "../db/queries/usage-prune.js";
import { RAW_PRUNED_BEFORE } from "../db/queries/usage-report.js";
import type { Logger } from "../log.js";

export interface RetentionDays {
  /** Raw per-call rows; 0: forever. */
  usage: number;
  /** Hourly and daily roll-ups; 0: forever. */
  rollups: number;
  /** Audit events; 0: forever. */
  audit: number;
}

export interface PruneOptions {
  /** Overrides the raw rows' retention for this run (ms); roll-ups and audit keep theirs. */
  olderThanMs?: number | undefined;
  /** Count what would go, delete nothing. */
  dryRun?: boolean;
  /** Who asked, in the audit event: "system" (the background pass, default) or "admin". */
  actor?: string;
}

export interface PruneResult {
  /** Raw rows older than this went (undefined: kept forever). */
  rawCutoff: Date | undefined;
  rawRows: number;
  rollupRows: number;
  auditRows: number;
  dryRun: boolean;
  /** False when another instance holds the prune lock (nothing was done). */
  ran: boolean;
  /** The longest statement of the pass, ms (on PGlite: the longest the event loop was held). */
  slowestMs: number;
}

export interface UsagePrunerOptions {
  retention: RetentionDays;
  /** Time between background passes (default one hour; 0: no background passes). */
  intervalMs?: number;
  /** Aimed-at duration of one statement on PGlite (default 4 ms). */
  sliceMs?: number;
  log?: Logger | undefined;
}

const DAY_MS = 86_400_000;
/** "prune" in ASCII: the advisory lock of the pass, one per database. */
const PRUNE_LOCK = sql.raw("482102740581");
const MIN_PAGES = 1;
const MAX_PAGES = 8_192;
const MAX_ROWS = 10_000;
/** Roll-up or audit rows deleted between two VACUUMs (PGlite). */
const VACUUM_ROWS = 2_000;

export class UsagePruner {
  readonly #database: Database;
  readonly #retention: RetentionDays;
  readonly #sliceMs: number;
  readonly #log: Logger | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<PruneResult> | undefined;
  #stopped = false;
  /** Pages per raw slice and rows per roll-up/audit slice: adapted to the time they take. */
  #pages = 4;
  #rows = 500;
  /** Raw pages changed by deletes before a VACUUM (PGlite): adapted to the time it takes. */
  #vacuumPages = 32;
  /** The longest statement of the pass under way, ms. */
  #slowest = 0;

  constructor(database: Database, opts: UsagePrunerOptions) {
    this.#database = database;
    this.#retention = opts.retention;
    this.#sliceMs = opts.sliceMs ?? 4;
    this.#log = opts.log;
    const interval = opts.intervalMs ?? 3_600_000;
    if (interval > 0) {
      this.#timer = setInterval(() => void this.prune().catch((e: unknown) => this.#log?.warn("usage prune failed", { err: e })), interval);
      this.#timer.unref();
    }
  }

  /** Stops background passes and waits for one under way (it stops at its next slice). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#running?.catch(() => {});
  }

  /**
   * One pass now. A plain pass asked while one is under way in this process is that one; a pass
   * with its own cutoff, or a dry run, waits for it first (one pass at a time).
   */
  prune(opts: PruneOptions = {}): Promise<PruneResult> {
    const plain = !opts.dryRun && opts.olderThanMs === undefined;
    if (this.#running && plain) return this.#running;
    const before = this.#running?.catch(() => undefined);
    const run = (async () => {
      await before;
      return this.#locked((db) => this.#pass(db, opts));
    })().finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  async #locked(pass: (db: Db) => Promise<PruneResult>): Promise<PruneResult> {
    if (this.#database.exclusive === undefined) return pass(this.#database.db);
    return this.#database.exclusive<PruneResult>(async (db) => {
      const [row] = (await db.execute(sql`select pg_try_advisory_lock(${PRUNE_LOCK}) as locked`)) as unknown as { locked: boolean }[];
      if (!row?.locked) return { rawCutoff: undefined, rawRows: 0, rollupRows: 0, auditRows: 0, dryRun: false, ran: false, slowestMs: 0 };
      try {
        return await pass(db);
      } finally {
        await db.execute(sql`select pg_advisory_unlock(${PRUNE_LOCK})`);
      }
    });
  }

  async #pass(db: Db, opts: PruneOptions): Promise<PruneResult> {
    const dryRun = opts.dryRun ?? false;
    const now = Date.now();
    const cutoffOf = (days: number): Date | undefined => (days > 0 ? new Date(now - days * DAY_MS) : undefined);
    const rawCutoff = opts.olderThanMs !== undefined ? new Date(now - opts.olderThanMs) : cutoffOf(this.#retention.usage);
    const rollupCutoff = cutoffOf(this.#retention.rollups);
    const auditCutoff = cutoffOf(this.#retention.audit);
    const t0 = performance.now();
    this.#slowest = 0;
    const rawRows = rawCutoff === undefined ? 0 : await this.#pruneRaw(db, rawCutoff, dryRun);
    const rollupRows = rollupCutoff === undefined ? 0 : await this.#pruneOldest(db, "usage_rollups", (n) => pruneRollups(db, rollupCutoff, n, dryRun), dryRun);
    const auditRows = auditCutoff === undefined ? 0 : await this.#pruneOldest(db, "audit_events", (n) => pruneAudit(db, auditCutoff, n, dryRun), dryRun);
    // Plan quota counters of windows that ended before the roll-ups' horizon (issue 24): a few
    // rows per subject and day, deleted in one statement.
    if (rollupCutoff !== undefined && !dryRun) await pruneWindows(db, rollupCutoff);
    const result: PruneResult = { rawCutoff, rawRows, rollupRows, auditRows, dryRun, ran: true, slowestMs: Math.round(this.#slowest * 10) / 10 };
    if (dryRun || this.#stopped) return result;
    if (rawCutoff !== undefined) {
      // Reports answer edges older than this from the hourly roll-ups (src/db/queries/usage-report.ts).
      // The latest cutoff wins (ISO times in UTC sort as text): a shorter on-demand prune stays.
      await db.execute(sql`insert into settings (name, value) values (${RAW_PRUNED_BEFORE}, ${rawCutoff.toISOString()})
        on conflict (name) do update set value = greatest(settings.value, excluded.value), updated_at = now()`);
    }
    if (rawRows + rollupRows + auditRows > 0) {
      const detail = `raw=${rawRows} rollups=${rollupRows} audit=${auditRows}${rawCutoff ? ` raw_before=${rawCutoff.toISOString()}` : ""}`;
      this.#log?.info("usage pruned", { rawRows, rollupRows, auditRows, rawCutoff: rawCutoff?.toISOString(), ms: Math.round(performance.now() - t0) });
      await insertAuditEvent(db, { actor: opts.actor ?? "system", action: "usage.pruned", target: "", detail });
    }
    return result;
  }

  /**
   * Walks the raw heap in page ranges; a range grows or shrinks with the time its delete takes.
   * The pages a delete changed are vacuumed together once there are `#vacuumPages` of them: a
   * VACUUM has a fixed cost, and the number of pages it may take in one go adapts the same way.
   */
  async #pruneRaw(db: Db, cutoff: Date, dryRun: boolean): Promise<number> {
    const pages = await rawPageCount(db);
    let total = 0;
    let dirty = 0;
    for (let from = 0; from < pages && !this.#stopped; ) {
      const to = Math.min(pages, from + this.#pages);
      const t = performance.now();
      const n = await pruneRawPages(db, from, to, cutoff, dryRun);
      this.#pages = adapt(this.#pages, this.#took(t), this.#sliceMs, MIN_PAGES, MAX_PAGES);
      if (n > 0) dirty += to - from;
      total += n;
      from = to;
      await yieldLoop();
      if (dirty > 0 && (dirty >= this.#vacuumPages || from >= pages) && !dryRun) {
        const v = performance.now();
        await this.#vacuum(db, "usage_calls");
        this.#vacuumPages = adapt(this.#vacuumPages, this.#took(v), this.#sliceMs * 2, MIN_PAGES, MAX_PAGES);
        dirty = 0;
        await yieldLoop();
      }
    }
    return total;
  }

  /** Deletes the oldest rows `#rows` at a time; vacuums every VACUUM_ROWS rows deleted and at the end. */
  async #pruneOldest(db: Db, table: PrunedTable, slice: (n: number) => Promise<number>, dryRun: boolean): Promise<number> {
    if (dryRun) return slice(Number.MAX_SAFE_INTEGER);
    let total = 0;
    let dirty = 0;
    while (!this.#stopped) {
      const asked = this.#rows;
      const t = performance.now();
      const n = await slice(asked);
      this.#rows = adapt(this.#rows, this.#took(t), this.#sliceMs, 10, MAX_ROWS);
      total += n;
      dirty += n;
      await yieldLoop();
      const last = n < asked;
      if (dirty > 0 && (dirty >= VACUUM_ROWS || last)) {
        const v = performance.now();
        await this.#vacuum(db, table);
        this.#took(v);
        dirty = 0;
        await yieldLoop();
      }
      if (last) break;
    }
    return total;
  }

  /** Milliseconds since `t`, kept when it is the pass's longest. */
  #took(t: number): number {
    const ms = performance.now() - t;
    if (ms > this.#slowest) this.#slowest = ms;
    return ms;
  }

  /** PGlite only (no autovacuum); on PostgreSQL autovacuum does it without holding anyone up. */
  async #vacuum(db: Db, table: PrunedTable): Promise<void> {
    if (this.#database.driver !== "pglite") return;
    await vacuumTable(db, table);
  }
}

/**
 * Halves a slice that took over the aim; grows one that took under a quarter of it by a half
 * (slowly: on a busy machine one quick slice says little, and a slow one costs a stall).
 */
function adapt(size: number, tookMs: number, aimMs: number, min: number, max: number): number {
  if (tookMs > aimMs) return Math.max(min, Math.floor(size / 2));
  if (tookMs < aimMs / 4) return Math.min(max, Math.ceil(size * 1.5));
  return size;
}
