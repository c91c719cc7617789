import { AggregatorRegistry, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { BucketHistogram } from "./bucket-histogram.js";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** Values on, between, below and past the bounds. */
const VALUES = [0, 0.001, 0.005, 0.0051, 0.01, 0.02, 0.05, 0.3, 0.5, 0.99, 1, 1.5, 42, 0.007];

function pair(labelNames: string[]): { theirs: Registry; ours: Registry; prom: Histogram<string>; fast: BucketHistogram<string> } {
  const theirs = new Registry();
  const ours = new Registry();
  const prom = new Histogram({ name: "t_seconds", help: "h", labelNames, buckets: BUCKETS, registers: [theirs] });
  const fast = new BucketHistogram("t_seconds", "h", { labelNames, buckets: BUCKETS, registers: [ours] });
  return { theirs, ours, prom, fast };
}

describe("BucketHistogram", () => {
  it("exposes what prom-client's Histogram exposes for the same observations, with labels", async () => {
    const { theirs, ours, prom, fast } = pair(["provider"]);
    expect(await ours.metrics()).toBe(await theirs.metrics()); // nothing observed: no label set yet
    const bound = new Map<string, ReturnType<typeof fast.labels>>();
    VALUES.forEach((v, i) => {
      const provider = i % 3 === 0 ? "anthropic" : "openai";
      prom.labels({ provider }).observe(v);
      if (!bound.has(provider)) bound.set(provider, fast.labels({ provider })); // bound when first seen, as metrics.ts does
      bound.get(provider)!.observe(v);
    });
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("without labels: zeros from the start, then the same text", async () => {
    const { theirs, ours, prom, fast } = pair([]);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    const child = fast.labels({});
    for (const v of VALUES) {
      prom.observe(v);
      child.observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("skips a value that is not a finite number (prom-client throws on it)", async () => {
    const { theirs, ours, prom, fast } = pair([]);
    const child = fast.labels({});
    for (const v of [0.02, Number.NaN, Number.POSITIVE_INFINITY, 0.3]) {
      if (Number.isFinite(v)) prom.observe(v);
      child.observe(v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("sums across workers as prom-client's aggregation does, and resets in place", async () => {
    const workers = [pair(["provider"]), pair(["provider"])];
    workers.forEach((w, n) => {
      for (const v of VALUES.slice(n * 3)) {
        w.prom.labels({ provider: "openai" }).observe(v);
        w.fast.labels({ provider: "openai" }).observe(v);
      }
    });
    const theirs = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.theirs.getMetricsAsJSON())));
    const ours = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.ours.getMetricsAsJSON())));
    expect(await ours.metrics()).toBe(await theirs.metrics());

    const { theirs: t, ours: o, prom, fast } = workers[0]!;
    const bound = fast.labels({ provider: "openai" });
    t.resetMetrics();
    o.resetMetrics();
    expect(await o.metrics()).toBe(await t.metrics());
    prom.labels({ provider: "openai" }).observe(0.2);
    bound.observe(0.2); // a child kept from before the reset still counts
    expect(await o.metrics()).toBe(await t.metrics());
  });
});
