/**
 * Hot-path cost of Metrics.observe: `node bin/run-ts.js bench/metrics-cost.ts`. Prints wall
 * and CPU ns per call for a realistic mix (3 providers, a few statuses and outcomes, timings
 * set), a single hot series, and the cost of one scrape. CPU is this process's user+system time.
 */
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import type { CallRecord } from "../src/relay/types.js";
import { Metrics } from "../src/observe/metrics.js";

const metrics = new Metrics({
  limits: { stats: () => ({ rejections: { ip: 3, token: 1, global: 0, key: 0 }, redisFallbacks: 0 }) },
  pools: { health: () => [{ pool: "main", provider: "openai", enabled: 3, cooling: 1, disabled: 1 }] },
  usage: { queueDepth: 0, dropped: 0 },
});

const record = (i: number): CallRecord => ({
  tokenId: "tok_x",
  subject: "",
  provider: ["openai", "anthropic", "gemini"][i % 3]!,
  model: "m",
  keyId: undefined,
  status: i % 50 === 0 ? 429 : 200,
  outcome: i % 97 === 0 ? Outcome.TRUNCATED : Outcome.COMPLETE,
  usage: undefined,
  bytes: 100,
  latencyMs: 12,
  overheadMs: 0.3 + (i % 10) / 10,
  upstreamMs: 5 + (i % 300),
});

function measure(label: string, n: number, fn: (i: number) => void): void {
  for (let i = 0; i < 10_000; i++) fn(i); // warm up
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(i);
  const cpu = process.cpuUsage(c0);
  const wall = ((performance.now() - t0) * 1e6) / n;
  console.log(`${label.padEnd(44)} wall ${wall.toFixed(0).padStart(6)} ns  cpu ${(((cpu.user + cpu.system) * 1000) / n).toFixed(0).padStart(6)} ns`);
}

const records = Array.from({ length: 1000 }, (_, i) => record(i));
const one = record(1);
for (let round = 0; round < 3; round++) {
  measure("observe, mixed series (x1M)", 1_000_000, (i) => metrics.observe(records[i % 1000]!));
  measure("observe, one series (x1M)", 1_000_000, () => metrics.observe(one));
  measure("record object + observe (x1M)", 1_000_000, (i) => metrics.observe({ ...one, upstreamMs: i % 300 }));
}
const t0 = performance.now();
const text = await metrics.render();
console.log(`scrape: ${(performance.now() - t0).toFixed(2)} ms, ${text.length} bytes`);
