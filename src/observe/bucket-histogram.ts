/**
 * A histogram for the per-call timings (src/observe/metrics.ts), exposed exactly as prom-client's
 * Histogram is (the same `get()` shape, so the registry's text, the workers' aggregation and
 * `resetMetrics` treat it alike), but cheap to observe: a bound child keeps its bucket counts in
 * a Float64Array, so an observation is a bucket search and three additions. prom-client's own
 * bound child builds a label object and hashes it on every observation (issue 22: per-call
 * metrics label lookups; two histograms per relayed call).
 */
import type { Registry } from "prom-client";

export interface BucketHistogramChild {
  /** Seconds; a value that is not a finite number is not counted. */
  observe(value: number): void;
}

interface Values {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

class Child implements BucketHistogramChild {
  /** Observations per bucket, not cumulative: counts[i] for values in (bounds[i-1], bounds[i]]. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class BucketHistogram<L extends string = never> {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #bounds: readonly number[];
  readonly #labelNames: readonly L[];
  /** By the label values joined with NUL, in labelNames' order. */
  readonly #children = new Map<string, Child>();

  constructor(
    readonly name: string,
    readonly help: string,
    opts: { labelNames?: readonly L[]; buckets: readonly number[]; registers: readonly Registry[] },
  ) {
    this.#bounds = [...opts.buckets].sort((a, b) => a - b);
    this.#labelNames = opts.labelNames ?? [];
    // As prom-client: a histogram without labels shows its zeros from the start.
    if (this.#labelNames.length === 0) this.labels({} as Record<L, string>);
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  /** The child for these label values; keep it (the lookup builds a key). */
  labels(labels: Readonly<Record<L, string>>): BucketHistogramChild {
    const key = this.#labelNames.map((n) => labels[n]).join("\0");
    let child = this.#children.get(key);
    if (child === undefined) {
      const own: Record<string, string> = {};
      for (const n of this.#labelNames) own[n] = labels[n];
      child = new Child(own, this.#bounds);
      this.#children.set(key, child);
    }
    return child;
  }

  /**
   * What prom-client's Histogram.get() gives: per label set (in the order they were bound;
   * prom-client's is the order of first observation), cumulative buckets, +Inf, sum, count.
   */
  get(): { name: string; help: string; type: string; values: Values[]; aggregator: string } {
    const values: Values[] = [];
    for (const c of this.#children.values()) {
      // A label set appears once observed (prom-client's hashMap entry), the unlabeled one always.
      if (c.count === 0 && this.#labelNames.length > 0) continue;
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += c.counts[i]!;
        values.push({ labels: { le: this.#bounds[i]!, ...c.labels }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { le: "+Inf", ...c.labels }, value: c.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...c.labels }, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...c.labels }, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** Registry.resetMetrics(): every count back to zero (children stay bound: callers keep them). */
  reset(): void {
    for (const c of this.#children.values()) c.reset();
  }
}
