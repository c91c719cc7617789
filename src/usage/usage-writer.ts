/**
 * Usage records off the hot path (DESIGN 3.3, 10, 11). The engine hands every counted call to
 * `record()`, which only queues it (synchronous, O(1), never throws, never touches the
 * database). The queue is written in batches, each atomic (rows + roll-ups + per-token metered
 * LLM tokens + per-key calls, src/db/queries/usage.ts), when `batchSize` rows wait or every
 * `intervalMs`, one batch at a time. A batch the database cannot take (connection lost,
 * unavailable) stays queued and is retried with backoff; the queue is bounded, and records that
 * do not fit are counted in `dropped`. A batch refused for its DATA (SQLSTATE class 22 or 23) is
 * bisected: the rows that fail alone go to `usage_dead_letters`, the rest is written, so one
 * poison row never blocks the queue (issue 18, finding 3). `close()` writes what is left on
 * shutdown, until a deadline: what is still unwritten then (the batch being written included)
 * goes to a spill file that the next start writes (src/usage/usage-spill.ts; issue 19).
 *
 * Rows are made storable at ingestion (`toRow`): numbers clamped, strings bounded and well
 * formed, model names clipped to a safe set; what was changed is kept in `flags` and counted.
 *
 * Delivery is at least once: a batch whose commit succeeded but whose answer was lost (the
 * connection dropped in between) is written again.
 *
 * The live feed (`subscribe`) is in-process: each instance sees the calls it relayed itself, so
 * with several instances a watcher sees one instance's calls (the one it is connected to).
 */
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../db/client.js";
import { insertUsageDeadLetter, type UsageInsert } from "../db/queries/usage.js";
import type { Logger } from "../log.js";
import { callCost } from "../pricing/price-book.js";
import type { Prices } from "../pricing/types.js";
import { MAX_TOKENS_PER_FIELD, partsOf, usageOf } from "../providers/shapes/usage-meter.js";
import type { Usage } from "../providers/types.js";
import type { CallRecord } from "../relay/engine.js";
import { describeError, isDataError, writeIsolating } from "./usage-batches.js";
import { spillUsage } from "./usage-spill.js";
import { FLAG_NAMES, UsageFlag, usageFlags, type UsageFlagName } from "./usage-flags.js";

/** A finished call as the live feed delivers it. */
export interface UsageEvent extends CallRecord {
  /** When the call ended. */
  at: Date;
}

export type UsageListener = (event: UsageEvent) => void;

export interface UsageFilter {
  /** Only calls to this provider. */
  provider?: string | undefined;
}

export interface UsageWriterOptions {
  /**
   * Rows per batch, and the queue length that triggers a write at once. 1000 by default: the
   * roll-up groups and each statement's fixed cost are shared by more calls, and on PGlite
   * (which runs on the event loop) a batch is two statements (COPY, then the sums), each
   * taking about as long as a batch of 500 did in one (src/db/queries/usage.ts).
   */
  batchSize?: number;
  /** Longest time a record waits before it is written. */
  intervalMs?: number;
  /** Records kept while the database is failing; beyond it records are dropped and counted. */
  maxQueue?: number;
  log?: Logger;
  /**
   * Prices a record that comes without a cost (CallRecord.costMicroUsd undefined: a caller that
   * does not price, or an unpriced model, which stays unpriced here too). Without it such
   * records are stored unpriced.
   */
  prices?: Prices;
}

const MAX_TEXT = 256;
const MAX_MODEL = 128;
const MAX_ERROR_TEXT = 1000;
const MAX_BACKOFF_MS = 5_000;
const CLOSE_ATTEMPTS = 3;

export interface CloseOptions {
  /** Epoch ms: past it nothing more is awaited, what is unwritten is spilled. */
  deadline?: number;
  /** Where unwritten records are spilled (the data directory); without it they are dropped, counted. */
  spillDir?: string;
}

interface Subscription {
  listener: UsageListener;
  provider: string | undefined;
}

export class UsageWriter {
  readonly #db: Db;
  readonly #batchSize: number;
  readonly #intervalMs: number;
  readonly #maxQueue: number;
  readonly #log: Logger | undefined;
  readonly #prices: Prices | undefined;
  #queue: UsageInsert[] = [];
  #subscriptions = new Set<Subscription>();
  /** The batch being written, if any: one at a time. */
  #writing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #soon = false;
  #inFlight = 0;
  #failures = 0;
  #retryAt = 0;
  #closed = false;
  #dropped = 0;
  #spilled = 0;
  /** The rows of the batch being written: spilled too when close() cannot wait for it. */
  #batch: UsageInsert[] | undefined;
  #deadLetters = 0;
  #failedWrites = 0;
  readonly #anomalies = Object.fromEntries(FLAG_NAMES.map((n) => [n, 0])) as Record<UsageFlagName, number>;

  constructor(db: Db, opts: UsageWriterOptions = {}) {
    this.#db = db;
    this.#batchSize = opts.batchSize ?? 1000;
    this.#intervalMs = opts.intervalMs ?? 250;
    this.#maxQueue = opts.maxQueue ?? 100_000;
    this.#log = opts.log;
    this.#prices = opts.prices;
    this.#timer = setInterval(() => this.#tick(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Records not yet written (queued, or in the batch being written). */
  get queueDepth(): number {
    return this.#queue.length + this.#inFlight;
  }

  /** Records written to a spill file on close (the database did not take them in time). */
  get spilled(): number {
    return this.#spilled;
  }

  /** Records lost because the queue was full (or arrived after close). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Records the database refused for their data, kept in `usage_dead_letters`. */
  get deadLetters(): number {
    return this.#deadLetters;
  }

  /** Batch writes that failed for a reason other than their data (retried with backoff). */
  get failedWrites(): number {
    return this.#failedWrites;
  }

  /** Records flagged at ingestion, by flag (a record may count under several). */
  get anomalies(): Readonly<Record<UsageFlagName, number>> {
    return this.#anomalies;
  }

  /** Live-feed listeners. */
  get watchers(): number {
    return this.#subscriptions.size;
  }

  /** Queues one finished call and hands it to live-feed listeners. Never throws. */
  record(r: CallRecord): void {
    try {
      const at = Date.now();
      const row = toRow(r, at, this.#prices);
      if (row.flags !== 0) this.#countFlags(row.flags);
      if (this.#closed || this.#queue.length >= this.#maxQueue) this.#dropped++;
      else this.#queue.push(row);
      // Watchers see the model and cost as they are stored (GetUsage shows the same).
      if (this.#subscriptions.size > 0) {
        this.#publish({ ...r, model: r.model === undefined ? undefined : row.model, costMicroUsd: row.costMicroUsd ?? undefined, at: new Date(at) });
      }
      if (this.#queue.length >= this.#batchSize && !this.#soon) {
        // Written on a later turn of the event loop, never inside the call that ended.
        this.#soon = true;
        setImmediate(() => {
          this.#soon = false;
          this.#tick();
        });
      }
    } catch {
      // A usage record must never break the call that produced it.
      this.#dropped++;
    }
  }

  /** Delivers every later call (matching `filter`) to `listener`; returns the unsubscribe. */
  subscribe(listener: UsageListener, filter: UsageFilter = {}): () => void {
    const sub: Subscription = { listener, provider: filter.provider || undefined };
    this.#subscriptions.add(sub);
    return () => void this.#subscriptions.delete(sub);
  }

  /** Writes everything queued so far; rejects (keeping the rows) when a batch fails. */
  async flush(): Promise<void> {
    while (this.#queue.length > 0 || this.#writing) {
      if (this.#writing) {
        await this.#writing;
        continue;
      }
      await this.#writeBatch();
    }
  }

  /**
   * Stops the timer and writes what is left (a failed batch is tried CLOSE_ATTEMPTS times) until
   * `deadline`; what is unwritten then is spilled to `spillDir` (or dropped, counted). Call after
   * in-flight calls ended.
   */
  async close({ deadline = Infinity, spillDir }: CloseOptions = {}): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Error>((resolve) => {
      if (Number.isFinite(deadline)) timer = setTimeout(() => resolve(new Error("shutdown deadline passed")), Math.max(0, deadline - Date.now()));
    });
    let error: unknown;
    for (let attempt = 1; ; attempt++) {
      // A stalled database never answers: the deadline stops the wait, not the write.
      const flushed = this.flush().then(
        () => undefined,
        (e: unknown) => e ?? new Error("usage write failed"),
      );
      error = await Promise.race([flushed, late]);
      if (error === undefined || attempt >= CLOSE_ATTEMPTS || Date.now() >= deadline) break;
      await Promise.race([new Promise((r) => setTimeout(r, 100 * attempt)), late]);
    }
    clearTimeout(timer);
    this.#closed = true;
    this.#subscriptions.clear();
    // The batch still on its way (it may yet commit: delivery is at least once) and the queue.
    const left = [...(this.#batch ?? []), ...this.#queue];
    this.#queue = [];
    if (left.length === 0) return;
    if (spillDir !== undefined) {
      try {
        const file = spillUsage(spillDir, left);
        this.#spilled += left.length;
        this.#log?.warn("usage records spilled", { count: left.length, file, err: describeError(error) });
        return;
      } catch (e) {
        this.#log?.error("usage records could not be spilled", { count: left.length, err: e });
      }
    }
    this.#log?.error("usage records lost on shutdown", { count: left.length, err: describeError(error) });
    this.#dropped += left.length;
  }

  #tick(): void {
    if (this.#writing || this.#closed || this.#queue.length === 0 || Date.now() < this.#retryAt) return;
    this.#writeBatch().then(
      () => {
        // A backlog (after an outage, or under load) drains batch after batch, not one per tick.
        if (this.#queue.length >= this.#batchSize) setImmediate(() => this.#tick());
      },
      () => {},
    );
  }

  /**
   * Writes the oldest batch; on a failure that is not the rows' fault, puts what is unwritten
   * back in front and backs off.
   */
  #writeBatch(): Promise<void> {
    const batch = this.#queue.length <= this.#batchSize ? this.#queue : this.#queue.slice(0, this.#batchSize);
    this.#queue = this.#queue.length <= this.#batchSize ? [] : this.#queue.slice(this.#batchSize);
    this.#inFlight = batch.length;
    this.#batch = batch;
    const writing = writeIsolating(this.#db, batch, (row, e) => this.#deadLetter(row, e)).then((failed) => {
      this.#inFlight = 0;
      this.#batch = undefined;
      if (failed === undefined) {
        this.#failures = 0;
        this.#retryAt = 0;
        return;
      }
      // Newer records arrived meanwhile: the unwritten rows go back in front, within the bound.
      const { unwritten, error } = failed;
      const room = Math.max(0, this.#maxQueue - this.#queue.length);
      this.#dropped += Math.max(0, unwritten.length - room);
      this.#queue = unwritten.slice(0, room).concat(this.#queue);
      this.#failures++;
      this.#failedWrites++;
      this.#retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, this.#intervalMs * 2 ** this.#failures);
      this.#log?.warn("usage batch failed; will retry", { rows: unwritten.length, queued: this.#queue.length, err: describeError(error) });
      throw error;
    });
    // Settles (never rejects) once the batch is done, so waiters need no error handling.
    this.#writing = writing
      .then(
        () => {},
        () => {},
      )
      .then(() => {
        this.#writing = undefined;
      });
    return writing;
  }

  /** Keeps a refused row in `usage_dead_letters`; returns the error when that could not be written now. */
  async #deadLetter(row: UsageInsert, refusal: unknown): Promise<unknown> {
    const error = text(describeError(refusal), MAX_ERROR_TEXT);
    // Ids and numbers only (never a secret): the same fields the row would have had.
    const record = JSON.stringify({ ...row, at: new Date(row.at).toISOString() });
    try {
      await insertUsageDeadLetter(this.#db, record, error);
      this.#deadLetters++;
      this.#log?.warn("usage record refused by the database; kept as a dead letter", { tokenId: row.tokenId, err: error });
      return undefined;
    } catch (e) {
      if (!isDataError(e)) return e;
      // JSON text always fits a text column; if even that is refused, the record is lost, counted.
      this.#dropped++;
      this.#log?.error("usage record refused, and its dead letter too", { tokenId: row.tokenId, err: error });
      return undefined;
    }
  }

  #countFlags(flags: number): void {
    for (const name of FLAG_NAMES) if ((flags & UsageFlag[name]) !== 0) this.#anomalies[name]++;
  }

  #publish(event: UsageEvent): void {
    for (const sub of this.#subscriptions) {
      if (sub.provider !== undefined && sub.provider !== event.provider) continue;
      try {
        sub.listener(event);
      } catch {
        // One broken listener does not stop the others, nor the call.
      }
    }
  }
}

/**
 * The stored form: bounded, well-formed strings (a lone surrogate or NUL would fail the whole
 * batch), usage clamped to sane counts (src/providers/shapes/usage-meter.ts: the meters already
 * did; this holds for any other source), what was changed recorded in `flags`. Exported for its test.
 */
export function toRow(r: CallRecord, at: number, prices: Prices | undefined): UsageInsert & { flags: number } {
  const usage = r.usage === undefined || (storableAsIs(r.usage) && !pricedHere(r, prices)) ? r.usage : checkedUsage(r.usage);
  const model = modelName(r.model ?? "");
  return {
    at,
    tokenId: text(r.tokenId),
    subject: text(r.subject),
    provider: text(r.provider),
    model,
    keyId: text(r.keyId ?? ""),
    attempts: text(r.attempts ?? ""),
    status: Math.min(Math.max(Math.trunc(r.status) || 0, 0), 999),
    outcome: r.outcome satisfies Outcome,
    promptTokens: usage?.promptTokens ?? 0,
    completionTokens: usage?.completionTokens ?? 0,
    totalTokens: usage?.totalTokens ?? 0,
    bytes: count(r.bytes),
    latencyMs: Math.min(count(r.latencyMs), 2_147_483_647),
    flags: usageFlags(usage) | (model === r.model || r.model === undefined ? 0 : UsageFlag.MODEL_CHANGED),
    plan: text(r.plan ?? ""),
    cachedTokens: usage?.cachedTokens ?? 0,
    reasoningTokens: usage?.reasoningTokens ?? 0,
    costMicroUsd: costOfRecord(r, usage, prices),
  };
}

/** The usage as the meters would have bounded it (any source: src/providers/shapes/usage-meter.ts). */
function checkedUsage(u: Usage): Usage {
  const usage = usageOf(u.promptTokens, u.completionTokens, u.totalTokens, usageFlags(u), partsOf(u));
  // The tier that served the call prices it (src/pricing/tiers.ts); the meters bounded it.
  if (u.serviceTier !== undefined) usage.serviceTier = u.serviceTier;
  return usage;
}

/**
 * True when checkedUsage would give back the same numbers and flags: each count a safe integer
 * in [0, MAX_TOKENS_PER_FIELD], the total not 0, each part (absent, or) within its side. The
 * meters hand on such usage for nearly every call, so its row takes the numbers as they are
 * instead of building usageOf's objects and closures again for each call (issue 22).
 */
function storableAsIs(u: Usage): boolean {
  const p = u.promptTokens;
  const c = u.completionTokens;
  return (
    tokenCount(p) &&
    tokenCount(c) &&
    tokenCount(u.totalTokens) &&
    u.totalTokens !== 0 &&
    part(u.cachedTokens, p) &&
    part(u.cacheWriteTokens, p) &&
    part(u.audioInputTokens, p) &&
    part(u.reasoningTokens, c) &&
    part(u.audioOutputTokens, c)
  );
}

function tokenCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 && n <= MAX_TOKENS_PER_FIELD;
}

/** A part of a prompt or completion: absent (undefined or null: 0), or a count within its side. */
function part(n: unknown, side: number): boolean {
  return n === undefined || n === null || (tokenCount(n) && n <= side);
}

/** The writer prices the call from its usage (costOfRecord): then the usage is the checked one, as the price book expects it. */
function pricedHere(r: CallRecord, prices: Prices | undefined): boolean {
  return r.outcome !== Outcome.REFUNDED && r.costMicroUsd === undefined && prices !== undefined;
}

/**
 * The cost stored for a call: a refunded call reached no provider and costs 0; otherwise the
 * record's own cost (the engine priced it), else priced here from its usage (src/pricing);
 * null when its model has no price.
 */
function costOfRecord(r: CallRecord, usage: CallRecord["usage"], prices: Prices | undefined): number | null {
  if (r.outcome === Outcome.REFUNDED) return 0;
  const cost = r.costMicroUsd ?? (prices === undefined ? undefined : callCost(prices, r.provider, r.model, usage));
  return cost === undefined ? null : count(cost);
}

/** With the `u` flag a surrogate range matches only unpaired halves, which PostgreSQL refuses. */
const UNSTORABLE = /[\uD800-\uDFFF]|\0/gu;

function text(s: string, max = MAX_TEXT): string {
  const clipped = s.length > max ? s.slice(0, max) : s;
  // Node 20 has String#isWellFormed (ES2024); the es2023 lib does not declare it.
  const wellFormed = (clipped as string & { isWellFormed(): boolean }).isWellFormed();
  return wellFormed && !clipped.includes("\0") ? clipped : clipped.replace(UNSTORABLE, (c) => (c === "\0" ? "" : "\uFFFD"));
}

/** Characters a model name keeps as is: every real model id fits (`ft:gpt-4o:org::id`, `@cf/meta/llama-3`). */
const MODEL_SAFE = /^[A-Za-z0-9._:@/+=~-]{0,128}$/;
/** Control characters (C0, DEL, C1): removed. */
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/g;
const UNSAFE = /[^A-Za-z0-9._:@/+=~-]/g;

/**
 * A client-chosen model name as stored (issue 18, finding 7): at most 128 characters of a safe
 * set; control characters removed, any other outside the set replaced by `_`, so the name stays
 * recognisable and can never be poison for the database, a log line or the console.
 */
function modelName(model: string): string {
  if (MODEL_SAFE.test(model)) return model;
  // Bounded before the replacements: a 1 MB name costs no more than a 512-character one.
  return model
    .slice(0, MAX_MODEL * 4)
    .replace(CONTROL, "")
    .replace(UNSAFE, "_")
    .slice(0, MAX_MODEL);
}

function count(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.min(Math.round(n), Number.MAX_SAFE_INTEGER) : 0;
}
