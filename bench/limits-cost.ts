/**
 * Hot-path cost of src/limits: `node bin/run-ts.js bench/limits-cost.ts [redis-url]`.
 * Prints wall and CPU µs per check for checkIp on 1 key (admitted and rejected), on 100k
 * distinct keys (with heap before, after and once idle keys expired), through Redis, and the
 * same admission through a plain Bottleneck local Group for comparison. CPU is this process's
 * user+system time, so it stays meaningful when other work shares the machine; wall is not.
 */
import Bottleneck from "bottleneck";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { setTimeout as sleep } from "node:timers/promises";
import { LimitExceeded, Limits, type LimitsConfig } from "../src/limits/limits.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const redisUrl = process.argv[2] ?? "redis://127.0.0.1:6379";
const base: LimitsConfig = { perIp: { rpm: 1e9 }, globalConcurrency: null, perKeyConcurrency: null, idleMs: 60_000 };

async function measure(label: string, n: number, check: (i: number) => void | Promise<unknown>, concurrent = false): Promise<void> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  // An admitted local check returns no promise (src/limits/limits.ts): awaited only when it does.
  if (concurrent) await Promise.all(Array.from({ length: n }, (_, i) => check(i)?.catch(swallow)));
  else
    for (let i = 0; i < n; i++) {
      const pending = check(i);
      if (pending !== undefined) await pending.catch(swallow);
    }
  const cpu = process.cpuUsage(c0);
  const wall = ((performance.now() - t0) * 1000) / n;
  console.log(`${label.padEnd(58)} wall ${wall.toFixed(2).padStart(8)} µs  cpu ${((cpu.user + cpu.system) / n).toFixed(2).padStart(8)} µs`);
}

function swallow(e: unknown): void {
  if (!(e instanceof LimitExceeded) && !(e instanceof Bottleneck.BottleneckError)) throw e;
}

const heapMb = (): string => {
  gc();
  return (process.memoryUsage().heapUsed / 1e6).toFixed(1);
};

// Local fast path.
const local = await Limits.create(base);
await measure("local checkIp, 1 key, admitted (x1M)", 1_000_000, () => local.checkIp("203.0.113.7"));
const tight = await Limits.create({ ...base, perIp: { rpm: 1 } });
await measure("local checkIp, 1 key, rejected (x200k, throws LimitExceeded)", 200_000, () => tight.checkIp("203.0.113.7"));
await measure("local checkToken, 1 key, admitted (x1M)", 1_000_000, () => local.checkToken("tok_1", 1e9));
await measure("local acquireKey + release, 1 key (x1M)", 1_000_000, async () => (await local.acquireKey("key_1"))());
await tight.close();
await local.close();

const idle = await Limits.create({ ...base, idleMs: 2_000 });
const ip = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const h0 = heapMb();
await measure("local checkIp, 100k distinct keys (x100k)", 100_000, (i) => idle.checkIp(ip(i)));
const h1 = heapMb();
await measure("local checkIp, 100k keys again (x100k, existing buckets)", 100_000, (i) => idle.checkIp(ip(i)));
const keysHeld = idle.stats().localKeys;
await sleep(3_500);
console.log(`heap MB: before ${h0}, 100k keys ${h1} (${keysHeld} keys), after idleMs ${heapMb()} (${idle.stats().localKeys} keys)`);
await idle.close();

// Bottleneck's local datastore with the same admission rule, for comparison.
const group = new Bottleneck.Group({
  highWater: 0,
  strategy: Bottleneck.strategy.OVERFLOW,
  reservoir: 1e9,
  reservoirIncreaseInterval: 1000,
  reservoirIncreaseAmount: 1,
  reservoirIncreaseMaximum: 1e9,
  timeout: 60_000,
});
const noop = (): Promise<void> => Promise.resolve();
await measure("Bottleneck local Group job, 1 key, sequential (x300)", 300, () => group.key("a").schedule(noop));
await measure("Bottleneck local Group job, 1 key, 5k concurrent", 5_000, () => group.key("a").schedule(noop), true);
const g0 = heapMb();
await measure("Bottleneck local Group job, 20k distinct keys, concurrent", 20_000, (i) => group.key(ip(i)).schedule(noop), true);
console.log(`Bottleneck local heap MB: ${g0} -> ${heapMb()} for 20k keys`);
const c0 = process.cpuUsage();
await sleep(1_000);
const c1 = process.cpuUsage(c0);
console.log(`Bottleneck local: CPU of 20k idle keys' heartbeats: ${((c1.user + c1.system) / 1000).toFixed(0)} ms per second`);
await Promise.all(group.keys().map((k) => group.deleteKey(k)));

// Redis (Bottleneck ioredis datastore). "fallbacks" counts checks Redis did not decide in time
// (decided by the local bucket instead): rows with many fallbacks measure overload, not Redis.
const redis = await Limits.create({ ...base, redis: { url: redisUrl, prefix: `bench${process.pid}:`, perIp: true } });
if (!(await redis.ping())) console.log(`Redis at ${redisUrl} unreachable: Redis rows skipped`);
else {
  const row = async (label: string, n: number, check: (i: number) => void | Promise<unknown>, concurrent = false): Promise<void> => {
    const f0 = redis.stats().redisFallbacks;
    await measure(label, n, check, concurrent);
    console.log(`${"".padEnd(58)} fallbacks ${redis.stats().redisFallbacks - f0} of ${n}`);
  };
  await redis.checkIp("198.51.100.1");
  await row("redis checkIp, 1 key, sequential (x500)", 500, () => redis.checkIp("198.51.100.1"));
  await row("redis checkIp, 1 key, 2k concurrent", 2_000, () => redis.checkIp("198.51.100.1"), true);
  await row("redis checkIp, 200 new keys, concurrent (first use)", 200, (i) => redis.checkIp(ip(i)), true);
  await row("redis checkIp, 200 keys x 5, concurrent", 1_000, (i) => redis.checkIp(ip(i % 200)), true);
  await row("redis checkIp, 2k new keys, concurrent (first use)", 2_000, (i) => redis.checkIp(ip(1_000 + i)), true);
  const live = redis.stats().localKeys - 2_201; // minus the local fallback buckets created above
  const c2 = process.cpuUsage();
  await sleep(2_000);
  const c3 = process.cpuUsage(c2);
  console.log(`redis: ~${live} live Redis-backed keys, idle: heartbeats cost ${((c3.user + c3.system) / 2000).toFixed(0)} ms CPU per second`);
}
await redis.close();
