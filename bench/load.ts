/**
 * Load drivers: wrk for throughput when installed (wrk.ts), autocannon otherwise (latencies
 * taken from its per-response event, in fractional ms, because its own histogram truncates to
 * whole ms), and a sequential undici loop on one keep-alive connection for latency at
 * concurrency 1.
 */
import autocannon from "autocannon";
import { performance } from "node:perf_hooks";
import { Pool, type Dispatcher } from "undici";
import { quantile, Samples } from "./stats.js";
import { runWrk, WRK } from "./wrk.js";

export interface HttpCall {
  url: string;
  method?: Dispatcher.HttpMethod;
  headers: Record<string, string>;
  /** Text, or bytes for a binary body (a Connect streaming envelope). */
  body: string | Buffer;
}

export interface ThroughputResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  non2xx: number;
  errors: number;
  seconds: number;
}

/** Which tool drives throughput: wrk when installed and not turned off (`--autocannon`). */
export const driver = { wrk: WRK };

export async function runThroughput(call: HttpCall, connections: number, durationS: number): Promise<ThroughputResult> {
  return driver.wrk ? runWrk(call, connections, durationS) : runAutocannon(call, connections, durationS);
}

export async function runAutocannon(call: HttpCall, connections: number, durationS: number): Promise<ThroughputResult> {
  const latencies = new Samples();
  const instance = autocannon({
    url: call.url,
    method: call.method ?? "POST",
    headers: call.headers,
    body: call.body,
    connections,
    duration: durationS,
    timeout: 10,
  });
  instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status >= 200 && status < 300) latencies.push(ms);
  });
  const r = await instance;
  const values = latencies.values();
  return {
    rps: r["2xx"] / r.duration,
    p50Ms: quantile(values, 0.5),
    p99Ms: quantile(values, 0.99),
    ok: r["2xx"],
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    seconds: r.duration,
  };
}

export interface LatencyResult {
  p50Ms: number;
  p99Ms: number;
  count: number;
  failures: number;
}

/** One request at a time on one keep-alive connection, for `durationS` seconds. */
export async function runSequentialLatency(call: HttpCall, durationS: number): Promise<LatencyResult> {
  const url = new URL(call.url);
  const pool = new Pool(url.origin, { connections: 1, keepAliveTimeout: 60_000 });
  const samples = new Samples();
  let failures = 0;
  const path = url.pathname + url.search;
  const deadline = performance.now() + durationS * 1000;
  try {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const res = await pool.request({ path, method: call.method ?? "POST", headers: call.headers, body: call.body });
      await res.body.text();
      const t1 = performance.now();
      if (res.statusCode >= 200 && res.statusCode < 300) samples.push(t1 - t0);
      else failures++;
    }
  } finally {
    await pool.close();
  }
  const values = samples.values();
  return { p50Ms: quantile(values, 0.5), p99Ms: quantile(values, 0.99), count: samples.length, failures };
}

/** One request, for checking a target answers 2xx before it is measured. */
export async function probe(call: HttpCall): Promise<{ status: number; body: string }> {
  const url = new URL(call.url);
  const pool = new Pool(url.origin, { connections: 1 });
  try {
    const res = await pool.request({ path: url.pathname + url.search, method: call.method ?? "POST", headers: call.headers, body: call.body });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await pool.close();
  }
}
