/**
 * `/metrics` in the Prometheus text format, through prom-client (DESIGN 11, issue 19.4).
 *
 * - Per call (`observe`, from the engine's CallRecord): `relayapi_requests_total{provider,
 *   status, outcome}`, `relayapi_upstream_latency_seconds{provider}` (from sending upstream to
 *   its response headers) and `relayapi_relay_overhead_seconds` (the time the relay adds before
 *   it sends upstream: token check, limits, counting).
 * - Per answer, HTTP and RPC, refusals included: answer-counter.ts registers
 *   `relayapi_responses_total` and `relayapi_in_flight_requests` here; database-health.ts
 *   `relayapi_database_up` and `relayapi_database_errors_total`.
 * - At scrape time, from the parts that own the numbers: limiter rejections by scope, Redis
 *   fallbacks, keys per pool by state (enabled, cooling, disabled), the usage writer's queue
 *   depth, dropped records, failed batch writes, dead letters (rows the database refused) and
 *   anomalies (records flagged at ingestion, by kind: src/usage/usage-flags.ts), calls leased
 *   from the database and unused, readiness (the /readyz checks, run by the scrape); plus
 *   `relayapi_build_info{version,commit}` and prom-client's process metrics (CPU, memory,
 *   event loop lag).
 *
 * Labels are provider ids, status codes, outcome names, reason codes, limit scopes, pool names
 * and the build's version: never a token, a key or anything a client chose. The hot path costs
 * two map lookups, a plain count (added to relayapi_requests_total at scrape time) and
 * prom-client's two histogram updates on label children bound once per
 * provider/status/outcome: ~1.5 µs of CPU per call on a loaded 2-core machine before the count
 * moved to scrape time (bench/metrics-cost.ts), most of it prom-client hashing the labels again.
 */
import cluster from "node:cluster";
import { workerMetrics } from "../cluster/cluster-metrics.js";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { BucketHistogram, type BucketHistogramChild } from "./bucket-histogram.js";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { PoolHealth } from "../keys/pool-registry.js";
import type { LimitScope } from "../limits/limits.js";
import type { CallRecord } from "../relay/types.js";
import { ANOMALY_KIND, FLAG_NAMES, type UsageFlagName } from "../usage/usage-flags.js";
import type { StorageSample } from "../usage/usage-storage.js";
import { buildInfo, type BuildInfo } from "./build-info.js";

/** What the scrape-time metrics read; each part keeps its own numbers. */
export interface MetricsSources {
  /** `redisUp` is present only when Redis is configured. */
  limits: { stats(): { rejections: Record<LimitScope, number>; redisFallbacks: number; redisUp?: boolean } };
  pools: { health(): PoolHealth[] };
  usage: {
    readonly queueDepth: number;
    readonly dropped: number;
    readonly deadLetters?: number;
    readonly anomalies?: Readonly<Record<UsageFlagName, number>>;
    /** Batch writes the database failed (retried, so rows are not lost until the queue is full). */
    readonly failedWrites?: number;
  };
  /** Calls this instance leased from the database and has not used, and the tokens they are for. */
  tokens?: { leaseStats(): { tokens: number; calls: number } };
  /** The /readyz verdict, checked at scrape time. */
  ready?: () => Promise<boolean>;
  /** The last sample of the database's size (src/usage/usage-storage.ts; refreshed on its own timer). */
  storage?: { readonly last: StorageSample | undefined };
}

interface CallChildren {
  requests: { inc(value?: number): void };
  /** Calls counted since the last scrape: added to `requests` at scrape time, not per call (issue 22). */
  pending: number;
  upstream: { observe(value: number): void };
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const SCOPES: readonly LimitScope[] = ["ip", "token", "global", "key"];

/** Process metrics are per process: one registry however many relays a process builds (tests). */
let processRegistry: Registry | undefined;

export class Metrics {
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
  readonly registry = new Registry();
  readonly #requests: Counter<"provider" | "status" | "outcome">;
  readonly #upstream: BucketHistogram<"provider">;
  readonly #overhead: BucketHistogramChild;
  /** provider -> status * 8 + outcome -> bound children. */
  readonly #children = new Map<string, Map<number, CallChildren>>();

  readonly #acrossWorkers: (() => Promise<string | undefined>) | undefined;

  constructor(sources: MetricsSources, build: BuildInfo = buildInfo()) {
    this.#acrossWorkers = cluster.isWorker
      ? workerMetrics(async () => [await this.registry.getMetricsAsJSON(), ...(processRegistry ? [await processRegistry.getMetricsAsJSON()] : [])])
      : undefined;
    const registers = [this.registry];
    const children = this.#children;
    this.#requests = new Counter({
      name: "relayapi_requests_total",
      help: "Counted relay calls by provider, HTTP status and outcome.",
      labelNames: ["provider", "status", "outcome"] as const,
      registers,
      collect() {
        for (const byCode of children.values()) {
          for (const c of byCode.values()) {
            if (c.pending === 0) continue;
            c.requests.inc(c.pending);
            c.pending = 0;
          }
        }
      },
    });
    // Observed on every call: bound children that count without prom-client's per-observation
    // label hashing (src/observe/bucket-histogram.ts), exposed as its Histogram is.
    this.#upstream = new BucketHistogram("relayapi_upstream_latency_seconds", "Time from sending a call upstream to the upstream's response headers.", {
      labelNames: ["provider"] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#overhead = new BucketHistogram(
      "relayapi_relay_overhead_seconds",
      "Time the relay adds before sending a call upstream (token check, limits, counting).",
      { buckets: OVERHEAD_BUCKETS, registers },
    ).labels({});

    const seenRejections: Record<string, number> = {};
    new Counter({
      name: "relayapi_limit_rejections_total",
      help: "Requests refused with 429 by a limit, by scope (ip, token, global, key).",
      labelNames: ["scope"] as const,
      registers,
      collect() {
        const { rejections } = sources.limits.stats();
        for (const scope of SCOPES) {
          const now = rejections[scope];
          this.inc({ scope }, Math.max(0, now - (seenRejections[scope] ?? 0)));
          seenRejections[scope] = now;
        }
      },
    });
    let seenFallbacks = 0;
    new Counter({
      name: "relayapi_limit_redis_fallbacks_total",
      help: "Shared (Redis) limit checks decided by this instance's own bucket because Redis could not.",
      registers,
      collect() {
        const now = sources.limits.stats().redisFallbacks;
        this.inc(Math.max(0, now - seenFallbacks));
        seenFallbacks = now;
      },
    });
    // Only with Redis configured (an unset gauge would read 0, "down"). Issue 18: Redis down is
    // degraded, not unready, so /readyz stays 200 and this is what alerting watches.
    if (sources.limits.stats().redisUp !== undefined) {
      new Gauge({
        name: "relayapi_redis_up",
        help: "1 while Redis answers and limits are shared across instances; 0 while they are per instance (degraded).",
        registers,
        collect() {
          this.set(sources.limits.stats().redisUp === false ? 0 : 1);
        },
      });
    }
    new Gauge({
      name: "relayapi_pool_keys",
      help: "Upstream keys per pool by state: enabled (usable now), cooling (resting after a 429), disabled.",
      labelNames: ["pool", "provider", "state"] as const,
      registers,
      collect() {
        // Rebuilt at each scrape so a deleted pool disappears.
        this.reset();
        for (const h of sources.pools.health()) {
          this.set({ pool: h.pool, provider: h.provider, state: "enabled" }, h.enabled);
          this.set({ pool: h.pool, provider: h.provider, state: "cooling" }, h.cooling);
          this.set({ pool: h.pool, provider: h.provider, state: "disabled" }, h.disabled);
        }
      },
    });
    new Gauge({
      name: "relayapi_usage_queue_depth",
      help: "Usage records waiting to be written to the database.",
      registers,
      collect() {
        this.set(sources.usage.queueDepth);
      },
    });
    let seenDropped = 0;
    new Counter({
      name: "relayapi_usage_dropped_total",
      help: "Usage records lost because the queue was full (a long database outage).",
      registers,
      collect() {
        const now = sources.usage.dropped;
        this.inc(Math.max(0, now - seenDropped));
        seenDropped = now;
      },
    });
    mirroredCounter(
      registers,
      "relayapi_usage_dead_letters_total",
      "Usage records the database refused for their data (SQLSTATE class 22/23), kept in usage_dead_letters.",
      () => sources.usage.deadLetters ?? 0,
    );
    mirroredCounter(
      registers,
      "relayapi_usage_write_failures_total",
      "Usage batch writes the database failed (the rows stay queued and are retried with backoff).",
      () => sources.usage.failedWrites ?? 0,
    );
    const seenAnomalies: Partial<Record<UsageFlagName, number>> = {};
    new Counter({
      name: "relayapi_usage_anomalies_total",
      help: "Usage records changed at ingestion, by kind: usage_out_of_range (provider usage clamped), model_name_changed (clipped).",
      labelNames: ["kind"] as const,
      registers,
      collect() {
        for (const name of FLAG_NAMES) {
          const now = sources.usage.anomalies?.[name] ?? 0;
          this.inc({ kind: ANOMALY_KIND[name] }, Math.max(0, now - (seenAnomalies[name] ?? 0)));
          seenAnomalies[name] = now;
        }
      },
    });
    if (sources.tokens !== undefined) {
      const tokens = sources.tokens;
      new Gauge({
        name: "relayapi_leased_calls",
        help: "Calls this instance leased from the database in blocks and has not used yet (given back when idle and on shutdown).",
        registers,
        collect() {
          this.set(tokens.leaseStats().calls);
        },
      });
      new Gauge({
        name: "relayapi_leased_tokens",
        help: "Tokens this instance holds a lease for.",
        registers,
        collect() {
          this.set(tokens.leaseStats().tokens);
        },
      });
    }
    if (sources.ready !== undefined) {
      const ready = sources.ready;
      new Gauge({
        name: "relayapi_ready",
        help: "1 when /readyz would answer ready (database answers, migrations applied, not shutting down), else 0; checked at each scrape.",
        registers,
        async collect() {
          this.set((await ready().catch(() => false)) ? 1 : 0);
        },
      });
    }
    if (sources.storage !== undefined) storageGauges(registers, sources.storage);
    new Gauge({
      name: "relayapi_build_info",
      help: "The running build: package version and git commit (RELAYAPI_COMMIT, else the checkout's HEAD, else unknown). Always 1.",
      labelNames: ["version", "commit"] as const,
      registers,
    }).set({ version: build.version, commit: build.commit }, 1);
    if (processRegistry === undefined) {
      processRegistry = new Registry();
      collectDefaultMetrics({ register: processRegistry });
    }
  }

  /** Records one finished call. Never throws: metrics must not break a call. */
  observe(r: CallRecord): void {
    try {
      const c = this.#childrenOf(r.provider, r.status, r.outcome);
      c.pending++;
      if (r.upstreamMs !== undefined) c.upstream.observe(r.upstreamMs / 1000);
      if (r.overheadMs !== undefined) this.#overhead.observe(r.overheadMs / 1000);
    } catch {
      // A NaN timing or the like: the call matters more than its metric.
    }
  }

  /** The exposition text: this relay's metrics, then the process's. */
  async render(): Promise<string> {
    // A worker of `serve --workers`: the whole relay's metrics, merged by the primary.
    const merged = await this.#acrossWorkers?.();
    if (merged !== undefined) return merged;
    const own = await this.registry.metrics();
    return processRegistry === undefined ? own : own + (await processRegistry.metrics());
  }

  #childrenOf(provider: string, status: number, outcome: Outcome): CallChildren {
    let byCode = this.#children.get(provider);
    if (byCode === undefined) {
      byCode = new Map();
      this.#children.set(provider, byCode);
    }
    const code = status * 8 + outcome;
    let c = byCode.get(code);
    if (c === undefined) {
      const labels = { provider, status: statusLabel(status), outcome: outcomeLabel(outcome) };
      c = { requests: this.#requests.labels(labels), pending: 0, upstream: this.#upstream.labels({ provider }) };
      byCode.set(code, c);
    }
    return c;
  }
}

function statusLabel(status: number): string {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? String(status) : "other";
}

function outcomeLabel(outcome: Outcome): string {
  return (Outcome[outcome] as string | undefined)?.toLowerCase() ?? "unspecified";
}

/**
 * Database size, usage tables' bytes and estimated rows, the data disk's used share (issue 23):
 * read from the last sample, so a scrape never queries the database for them.
 */
function storageGauges(registers: Registry[], storage: { readonly last: StorageSample | undefined }): void {
  new Gauge({
    name: "relayapi_database_size_bytes",
    help: "Size of the relay's database (pg_database_size), sampled every minute.",
    registers,
    collect() {
      const s = storage.last;
      if (s !== undefined) this.set(s.databaseBytes);
    },
  });
  new Gauge({
    name: "relayapi_table_bytes",
    help: "Bytes of a usage or audit table with its indexes (pg_total_relation_size), sampled every minute.",
    labelNames: ["table"] as const,
    registers,
    collect() {
      for (const [table, t] of Object.entries(storage.last?.tables ?? {})) this.set({ table }, t.bytes);
    },
  });
  new Gauge({
    name: "relayapi_table_rows",
    help: "Estimated rows of a usage or audit table (reltuples, as of its last VACUUM or ANALYZE), sampled every minute.",
    labelNames: ["table"] as const,
    registers,
    collect() {
      for (const [table, t] of Object.entries(storage.last?.tables ?? {})) this.set({ table }, t.rows);
    },
  });
  new Gauge({
    name: "relayapi_data_disk_used_ratio",
    help: "Used share of the embedded database's disk (0..1); a warning is logged above 0.9.",
    registers,
    collect() {
      const used = storage.last?.diskUsed;
      if (used !== undefined) this.set(used);
    },
  });
}

/** A counter that follows a running total kept elsewhere (read at each scrape, never going back). */
function mirroredCounter(registers: Registry[], name: string, help: string, read: () => number): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read();
      this.inc(Math.max(0, now - seen));
      seen = now;
    },
  });
}
