/**
 * Limits without Redis: rates reject at once with Retry-After, concurrency slots release
 * (idempotently), idle keys expire so memory stays bounded (100k distinct IPs measured),
 * IPv6 is limited per /64, and a closed Limits lets the process exit.
 */
import { execFile } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { ipKey, LimitExceeded, Limits, type LimitScope, type LimitsConfig } from "./limits.js";

const base: LimitsConfig = { perIp: null, globalConcurrency: null, perKeyConcurrency: null, idleMs: 60_000 };
const open: Limits[] = [];
async function limits(cfg: Partial<LimitsConfig>): Promise<Limits> {
  const l = await Limits.create({ ...base, ...cfg });
  open.push(l);
  return l;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

async function rejection(p: void | Promise<unknown>): Promise<LimitExceeded> {
  const e: unknown = await Promise.resolve(p).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(LimitExceeded);
  return e as LimitExceeded;
}

async function admitted(n: number, check: () => void | Promise<unknown>): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++)
    await Promise.resolve(check()).then(
      () => ok++,
      (e: unknown) => expect(e).toBeInstanceOf(LimitExceeded),
    );
  return ok;
}

describe("rates", () => {
  it("admits the burst, then rejects at once with Retry-After, as a 429 RelayError", async () => {
    const l = await limits({ perIp: { rpm: 60, burst: 3 } });
    for (let i = 0; i < 3; i++) await l.checkIp("203.0.113.1");
    const t0 = performance.now();
    const e = await rejection(l.checkIp("203.0.113.1"));
    expect(performance.now() - t0).toBeLessThan(100); // not the 1 s a refill takes
    expect(e).toBeInstanceOf(RelayError);
    expect([e.code, e.status, e.scope, e.retryAfterSeconds, e.retryAfter]).toEqual(["rate_limited", 429, "ip", 1, 1]);
    await l.checkIp("203.0.113.2"); // other IPs are independent
    expect(l.stats().rejections).toEqual({ ip: 1, token: 0, global: 0, key: 0 });
  });

  it("limits tokens by their own rpm, burst = rpm, Retry-After = time to the next call", async () => {
    const l = await limits({});
    expect(await admitted(130, () => l.checkToken("tok_a", 120))).toBe(120);
    expect(await admitted(5, () => l.checkToken("tok_b", 2))).toBe(2);
    expect((await rejection(l.checkToken("tok_b", 2))).retryAfterSeconds).toBe(30);
    expect((await rejection(l.checkToken("tok_a", 120))).scope).toBe("token");
    await expect(Promise.resolve(l.checkToken("tok_c", 0))).rejects.toThrow(RangeError);
  });

  it("charges a per-IP check its cost, up to the burst (a leak report pays per token)", async () => {
    const l = await limits({ perIp: { rpm: 60, burst: 10 } });
    expect(l.ipBurst).toBe(10);
    await l.checkIp("203.0.113.3", 6);
    // 4 left: a cost of 5 waits for one more (1 s at one a second).
    expect((await rejection(l.checkIp("203.0.113.3", 5))).retryAfterSeconds).toBe(1);
    await l.checkIp("203.0.113.3", 4);
    await expect(Promise.resolve(l.checkIp("203.0.113.4", 11))).rejects.toThrow(RangeError);
    await expect(Promise.resolve(l.checkIp("203.0.113.4", 0))).rejects.toThrow(RangeError);
    expect((await limits({})).ipBurst).toBeNull();
  });

  it("refills continuously", async () => {
    const l = await limits({ perIp: { rpm: 600_000, burst: 1 } }); // one call per 0.1 ms
    await l.checkIp("198.51.100.1");
    await sleep(5);
    // Admitted at once: no promise on the relayed call's path (issue 22).
    expect(l.checkIp("198.51.100.1")).toBeUndefined();
    expect(l.stats().rejections.ip).toBe(0);
  });

  it("is not checked when off", async () => {
    const l = await limits({});
    for (let i = 0; i < 1000; i++) await l.checkIp("203.0.113.1");
    expect(l.stats().localKeys).toBe(0);
  });

  it("limits IPv6 per /64 and IPv4-mapped addresses as IPv4", async () => {
    expect(ipKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(ipKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    const l = await limits({ perIp: { rpm: 60, burst: 1 } });
    await l.checkIp("2001:db8:1:2::1");
    await rejection(l.checkIp("2001:db8:1:2:ffff::9"));
    await l.checkIp("2001:db8:1:3::1");
    await l.checkIp("192.0.2.1");
    await rejection(l.checkIp("::ffff:192.0.2.1"));
  });

  it("rejects invalid configuration", async () => {
    const bad: Partial<LimitsConfig>[] = [
      { perIp: { rpm: 0 } },
      { perIp: { rpm: 60, burst: 0.5 } },
      { globalConcurrency: 0 },
      { perKeyConcurrency: 1.5 },
      { idleMs: 0 },
      { redis: { url: "http://x", prefix: "", perIp: false } },
      { redis: { url: "redis://x", prefix: "a{b}:", perIp: false } },
    ];
    for (const cfg of bad) await expect(Limits.create({ ...base, ...cfg }), JSON.stringify(cfg)).rejects.toThrow(RangeError);
  });
});

describe("concurrency", () => {
  // Slots are taken or refused at once, never awaited (src/limits/limits.ts).
  const full = async (acquire: () => unknown, scope: LimitScope): Promise<void> => {
    const e = await rejection(new Promise((resolve) => resolve(acquire())));
    expect([e.scope, e.retryAfterSeconds, e.message]).toEqual([scope, 1, "too many concurrent requests"]);
  };

  it("holds global slots until released; release is idempotent", async () => {
    const l = await limits({ globalConcurrency: 2 });
    const a = await l.acquireGlobal();
    const b = await l.acquireGlobal();
    await full(() => l.acquireGlobal(), "global");
    a();
    a(); // a second release must not free b's slot
    const c = await l.acquireGlobal();
    await full(() => l.acquireGlobal(), "global");
    b();
    c();
    await Promise.all([l.acquireGlobal(), l.acquireGlobal()]);
  });

  it("counts slots per upstream key, and forgets a key when its last slot is released", async () => {
    const l = await limits({ perKeyConcurrency: 1 });
    const k1 = await l.acquireKey("key_1");
    const k2 = await l.acquireKey("key_2");
    await full(() => l.acquireKey("key_1"), "key");
    expect(l.stats().localKeys).toBe(2);
    k1();
    k2();
    expect(l.stats().localKeys).toBe(0);
    (await l.acquireKey("key_1"))();
    expect(l.stats().rejections.key).toBe(1);
  });

  it("is free when off", async () => {
    const l = await limits({});
    const releases = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? l.acquireGlobal() : l.acquireKey("k"))));
    expect(releases).toHaveLength(100);
    for (const r of releases) r();
    expect(l.stats().rejections).toEqual({ ip: 0, token: 0, global: 0, key: 0 });
    expect(l.stats().localKeys).toBe(0);
  });
});

describe("idle keys", () => {
  it("expire after idleMs once their bucket is full again", async () => {
    const l = await limits({ perIp: { rpm: 600_000, burst: 5 }, idleMs: 100 });
    for (let i = 0; i < 1000; i++) await l.checkIp(`10.0.${i >> 8}.${i & 255}`);
    await l.checkToken("tok_slow", 1); // 60 s until full: kept although idle
    expect(l.stats().localKeys).toBe(1001);
    await sleep(300);
    expect(l.stats().localKeys).toBe(1);
  });

  it("keep memory bounded with 100k distinct IPs (heap measured and reported)", async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    const heap = (): number => (gc?.(), process.memoryUsage().heapUsed / 1e6);
    const l = await limits({ perIp: { rpm: 600, burst: 10 }, idleMs: 500 });
    const before = heap();
    for (let i = 0; i < 100_000; i++) await l.checkIp(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    expect(l.stats().localKeys).toBe(100_000);
    const full = heap();
    await sleep(1_500);
    expect(l.stats().localKeys).toBe(0);
    const after = heap();
    console.log(
      `[limits] heap MB (gc ${gc ? "forced" : "not available"}): before ${before.toFixed(1)}, 100k IPs ${full.toFixed(1)}, after idle expiry ${after.toFixed(1)}`,
    );
    if (gc) expect(after - before).toBeLessThan(5);
  });
});

describe("close", () => {
  it("lets the process exit", async () => {
    const code = `
      import { Limits } from "./src/limits/limits.ts";
      const l = await Limits.create({ perIp: { rpm: 60 }, globalConcurrency: 4, perKeyConcurrency: 2, idleMs: 60000 });
      await l.checkIp("203.0.113.1"); await l.checkToken("t", 60); (await l.acquireKey("k"))();
      await l.close();`;
    const t0 = performance.now();
    await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { timeout: 20_000 });
    expect(performance.now() - t0).toBeLessThan(20_000);
  });
});
