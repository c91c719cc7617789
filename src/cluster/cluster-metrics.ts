/**
 * `/metrics` under `serve --workers N` answers for the whole relay, whichever worker takes the
 * scrape: the worker asks the primary, the primary collects every live worker's metrics (as
 * prom-client JSON, over the cluster's IPC channel) and merges them with prom-client's own
 * aggregation. Counters, histograms and gauges of work in progress (in-flight calls, leased
 * calls, queued usage) are summed; gauges that describe the shared state or the relay as a whole
 * (database up, ready, sizes, build info) are not: `min` for health, `max` for sizes.
 * A primary that does not answer within COLLECT_MS leaves the worker to answer with its own.
 *
 * A worker that dies takes its counters with it, and a sum that goes down reads to Prometheus as
 * a counter reset: rate() then counted the whole remaining total again, a spike at every worker
 * restart. So the primary keeps each worker's last collected counters and histograms, and after
 * its death adds them to every merge (folded into one part, so memory follows the label sets, not
 * the number of restarts). What a worker counted after its last collection is lost with it; the
 * sums still never go down.
 */
import cluster, { type Worker } from "node:cluster";
import type { Registry } from "prom-client";

/** One metric as a registry's getMetricsAsJSON() gives it. */
export type MetricJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>[number];

const ASK = "relayapi:metrics-ask";
const ANSWER = "relayapi:metrics-answer";
const COLLECT = "relayapi:metrics-collect";
const COLLECTED = "relayapi:metrics-collected";
const COLLECT_MS = 2_000;

/** How a gauge merges across workers when summing would be wrong. */
const MERGE: Record<string, "min" | "max"> = {
  relayapi_database_up: "min",
  relayapi_redis_up: "min",
  relayapi_ready: "min",
  relayapi_build_info: "max",
  relayapi_pool_keys: "max",
  relayapi_database_size_bytes: "max",
  relayapi_table_bytes: "max",
  relayapi_table_rows: "max",
  relayapi_data_disk_used_ratio: "max",
};

interface Message {
  type: string;
  id: number;
  text?: string;
  metrics?: MetricJson[][];
}

function isMessage(m: unknown): m is Message {
  return typeof m === "object" && m !== null && typeof (m as Message).type === "string" && typeof (m as Message).id === "number";
}

let asked = 0;
const waiting = new Map<number, (text: string | undefined) => void>();
let workerListening = false;

/**
 * In a worker: answers the primary's collection requests with `own()` (each registry's JSON),
 * and returns the function `/metrics` calls for the merged text (undefined: render your own).
 */
export function workerMetrics(own: () => Promise<MetricJson[][]>): () => Promise<string | undefined> {
  if (!workerListening) {
    workerListening = true;
    process.on("message", (m: unknown) => {
      if (!isMessage(m)) return;
      if (m.type === ANSWER) {
        waiting.get(m.id)?.(m.text);
        waiting.delete(m.id);
      }
    });
  }
  // One collector per process: the latest relay built in it (there is one in a worker).
  collectOwn = own;
  return () =>
    new Promise((resolve) => {
      const id = ++asked;
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, COLLECT_MS + 500);
      waiting.set(id, (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      process.send?.({ type: ASK, id });
    });
}

let collectOwn: (() => Promise<MetricJson[][]>) | undefined;
if (cluster.isWorker) {
  process.on("message", (m: unknown) => {
    if (!isMessage(m) || m.type !== COLLECT || collectOwn === undefined) return;
    collectOwn().then(
      (metrics) => process.send?.({ type: COLLECTED, id: m.id, metrics }),
      () => process.send?.({ type: COLLECTED, id: m.id, metrics: [] }),
    );
  });
}

/** In the primary: answers the workers' `/metrics` requests with every live worker's metrics merged. */
export function serveClusterMetrics(): void {
  let next = 0;
  const collecting = new Map<number, { pending: Set<number>; parts: MetricJson[][]; done(): void }>();
  /** Each live worker's last collected counters and histograms. */
  const last = new Map<number, MetricJson[][]>();
  /** Those of the workers that died, merged into every answer. */
  let retired: MetricJson[][] = [];
  cluster.on("exit", (worker: Worker) => {
    const kept = last.get(worker.id);
    last.delete(worker.id);
    if (kept !== undefined) retired.push(...kept);
  });
  cluster.on("message", (worker: Worker, m: unknown) => {
    if (!isMessage(m)) return;
    if (m.type === COLLECTED) {
      const c = collecting.get(m.id);
      if (c === undefined) return;
      c.parts.push(...(m.metrics ?? []));
      // Copied now: merge() marks the parts it is given.
      last.set(
        worker.id,
        (m.metrics ?? []).map((list) => list.filter((metric) => MONOTONIC.has(String(metric.type))).map((metric) => structuredClone(metric))),
      );
      c.pending.delete(worker.id);
      if (c.pending.size === 0) c.done();
      return;
    }
    if (m.type !== ASK) return;
    const id = ++next;
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    const parts: MetricJson[][] = [];
    const finish = (): void => {
      if (!collecting.delete(id)) return;
      clearTimeout(timer);
      void (async () => {
        if (retired.length > 1) retired = await fold(retired);
        return merge([...parts, ...retired.map((list) => list.map((metric) => structuredClone(metric)))]);
      })().then(
        (text) => worker.isConnected() && worker.send({ type: ANSWER, id: m.id, text }),
        () => worker.isConnected() && worker.send({ type: ANSWER, id: m.id }),
      );
    };
    const timer = setTimeout(finish, COLLECT_MS);
    collecting.set(id, { pending: new Set(live.map((w) => w.id)), parts, done: finish });
    for (const w of live) w.send({ type: COLLECT, id });
    if (live.length === 0) finish();
  });
}

/** Metric types whose value only grows: kept after their worker's death. */
const MONOTONIC = new Set(["counter", "histogram"]);

/** Several retired parts as one (summed per label set). */
async function fold(parts: MetricJson[][]): Promise<MetricJson[][]> {
  const { AggregatorRegistry } = await import("prom-client");
  return [await AggregatorRegistry.aggregate(parts).getMetricsAsJSON()];
}

async function merge(parts: MetricJson[][]): Promise<string> {
  for (const list of parts) {
    for (const metric of list) {
      const how = MERGE[metric.name];
      if (how !== undefined) metric.aggregator = how;
    }
  }
  // Loaded at the first scrape: the primary runs no relay, and prom-client is ~10 MB of it.
  const { AggregatorRegistry } = await import("prom-client");
  return AggregatorRegistry.aggregate(parts).metrics();
}
