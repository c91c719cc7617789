/**
 * Load from C when the tools are installed (`apt-get install wrk nghttp2-client`): wrk for
 * HTTP/1.1 (a generated Lua script sets the POST body and headers and prints its summary as
 * JSON) and h2load for h2c. A Node load generator on a 2-core box takes a core from the target
 * it measures; these cost a fraction of that. Latency percentiles come from the tools'
 * histograms (µs resolution).
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HttpCall, ThroughputResult } from "./load.js";

function has(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export const WRK = has("wrk");
export const H2LOAD = has("h2load");

/** A Lua long string that cannot be closed by the text inside it. */
function luaString(s: string): string {
  let eq = "";
  while (s.includes(`]${eq}]`)) eq += "=";
  return `[${eq}[${s}]${eq}]`;
}

/** Bytes as a Lua string of decimal escapes: exact for any byte (a long string would turn CR LF into LF). */
function luaBytes(b: Buffer): string {
  let out = '"';
  for (const byte of b) out += `\\${byte}`;
  return `${out}"`;
}

function script(call: HttpCall): string {
  const headers = Object.entries(call.headers)
    // The spaces matter: `t[[[k]]]` would parse as a call of t with a long string.
    .map(([k, v]) => `wrk.headers[ ${luaString(k)} ] = ${luaString(v)}`)
    .join("\n");
  return `wrk.method = "${call.method ?? "POST"}"
wrk.body = ${typeof call.body === "string" ? luaString(call.body) : luaBytes(call.body)}
${headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%.0f,"us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.1f,"p99":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} failed: ${err.message} ${stderr.slice(0, 300)}`));
      else if (stderr.trim()) reject(new Error(`${cmd}: ${stderr.slice(0, 300)}`));
      else resolve(stdout);
    });
  });
}

/** wrk with one thread (the target needs the other core more than the load does). */
export async function runWrk(call: HttpCall, connections: number, durationS: number, threads = 1): Promise<ThroughputResult> {
  const dir = mkdtempSync(join(tmpdir(), "relayapi-bench-wrk-"));
  try {
    const file = join(dir, "call.lua");
    writeFileSync(file, script(call));
    const out = await run(
      "wrk",
      [
        "-t",
        String(Math.min(threads, connections)),
        "-c",
        String(connections),
        "-d",
        `${Math.max(1, Math.round(durationS))}s`,
        "--timeout",
        "10s",
        "-s",
        file,
        call.url,
      ],
      (durationS + 30) * 1000,
    );
    const line = out.split("\n").find((l) => l.startsWith("WRKJSON "));
    if (!line) throw new Error(`wrk printed no summary: ${out.slice(-300)}`);
    const r = JSON.parse(line.slice(8)) as Record<string, number>;
    const seconds = r.us! / 1e6;
    const errors = r.connect! + r.read! + r.write! + r.timeout!;
    // wrk counts an answer of status > 399 as a "status" error; everything else completed is 2xx/3xx.
    const ok = r.requests! - r.status!;
    return { rps: ok / seconds, p50Ms: r.p50! / 1000, p99Ms: r.p99! / 1000, ok, non2xx: r.status!, errors, seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * h2load over h2c (prior knowledge): `connections` connections, one stream in flight on each
 * (`-m 1`), so it is the same concurrency as the HTTP/1.1 runs.
 */
export async function runH2load(call: HttpCall, connections: number, durationS: number): Promise<ThroughputResult> {
  const dir = mkdtempSync(join(tmpdir(), "relayapi-bench-h2load-"));
  try {
    const body = join(dir, "body");
    writeFileSync(body, call.body);
    const headers = Object.entries(call.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
    const out = await run(
      "h2load",
      ["-c", String(connections), "-m", "1", "-t", "1", "-D", String(Math.max(1, Math.round(durationS))), "-d", body, ...headers, call.url],
      (durationS + 30) * 1000,
    );
    // "finished in 5.00s, 8123.40 req/s, ..." / "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    // "status codes: N 2xx, N 3xx, N 4xx, N 5xx" / "time for request:  min  max  mean  sd  +/- sd"
    const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
    const seconds = num(/finished in ([\d.]+)s/);
    const ok = num(/status codes: (\d+) 2xx/);
    const done = num(/(\d+) done/);
    const failed = num(/(\d+) failed/) + num(/(\d+) errored/) + num(/(\d+) timeout/);
    const mean = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out)?.[3];
    const meanMs = mean === undefined ? NaN : mean.endsWith("us") ? parseFloat(mean) / 1000 : mean.endsWith("ms") ? parseFloat(mean) : parseFloat(mean) * 1000;
    // h2load prints no percentiles of request time; its mean stands in for p50 (p99 unknown).
    return { rps: ok / seconds, p50Ms: meanMs, p99Ms: NaN, ok, non2xx: Math.max(0, done - ok), errors: failed, seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
