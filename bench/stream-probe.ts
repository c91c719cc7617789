/**
 * Streaming probe: sequential SSE calls read with undici, timestamping every body read.
 * TTFB is the first body byte (the mock sends its first frame at once). Each frame carries the
 * mock's `sent_ns` (CLOCK_MONOTONIC, shared by all processes on the host), so its transit time
 * mock -> client is measured per frame; a target that holds a chunk shows a larger transit.
 */
import { Pool } from "undici";
import type { HttpCall } from "./load.js";
import { quantile } from "./stats.js";

export interface StreamResult {
  streams: number;
  /** Per-stream time to the first body byte, p50 over the streams (ms). */
  ttfbP50Ms: number;
  /** Transit mock -> client per frame (ms). */
  transitP50Ms: number;
  transitP99Ms: number;
  transitMaxMs: number;
  /** Largest gap between two frames' arrival (ms); the mock spaces them `delayMs` apart. */
  maxGapMs: number;
  framesPerStream: number;
  usageSeen: boolean;
  failures: number;
}

const SENT = /"sent_ns":"(\d+)"/g;

export async function runStreamProbe(call: HttpCall, streams: number): Promise<StreamResult> {
  const url = new URL(call.url);
  const pool = new Pool(url.origin, { connections: 1, keepAliveTimeout: 60_000 });
  const ttfb: number[] = [];
  const transit: number[] = [];
  let maxGap = 0;
  let frames = 0;
  let usageSeen = true;
  let failures = 0;
  try {
    for (let s = 0; s < streams; s++) {
      const t0 = process.hrtime.bigint();
      const res = await pool.request({ path: url.pathname + url.search, method: "POST", headers: call.headers, body: call.body });
      if (res.statusCode !== 200) {
        failures++;
        await res.body.text();
        continue;
      }
      let first = true;
      let pending = "";
      let last = 0n;
      let sawUsage = false;
      for await (const chunk of res.body) {
        const now = process.hrtime.bigint();
        if (first) {
          ttfb.push(Number(now - t0) / 1e6);
          first = false;
        }
        pending += (chunk as Buffer).toString();
        SENT.lastIndex = 0;
        let end = 0;
        for (let m = SENT.exec(pending); m; m = SENT.exec(pending)) {
          transit.push(Number(now - BigInt(m[1]!)) / 1e6);
          if (last !== 0n) maxGap = Math.max(maxGap, Number(now - last) / 1e6);
          last = now;
          frames++;
          end = SENT.lastIndex;
        }
        if (pending.includes('"usage"')) sawUsage = true;
        pending = pending.slice(end);
      }
      usageSeen &&= sawUsage;
    }
  } finally {
    await pool.close();
  }
  const ok = streams - failures;
  return {
    streams: ok,
    ttfbP50Ms: quantile(ttfb, 0.5),
    transitP50Ms: quantile(transit, 0.5),
    transitP99Ms: quantile(transit, 0.99),
    transitMaxMs: transit.length ? Math.max(...transit) : NaN,
    maxGapMs: maxGap,
    framesPerStream: ok ? frames / ok : 0,
    usageSeen: ok > 0 && usageSeen,
    failures,
  };
}
