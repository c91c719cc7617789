/**
 * What one relayed call makes, counted rather than timed, so it reads the same on a busy box:
 * `node bin/run-ts.js bench/call-work.ts [calls] [--json]`.
 *
 * In one process: the mock provider, the relay (`build()`, PGlite in a temporary directory, the
 * bench's token) and a client on one keep-alive connection sending the bench's chat call, one
 * at a time. Counted over `calls` calls (default 2,000) after as many to warm up:
 * - promises created (async_hooks PROMISE inits): every `async` function called, every `await`
 *   and `new Promise` is one or more; each costs an allocation and a microtask turn;
 * - bytes allocated on the V8 heap, collected ones included (the sampling heap profiler with
 *   both GC flags, 256-byte interval): what the scavenger has to sweep behind each call.
 * The same client sending the same call straight to the mock is measured the same way, and
 * subtracted: the numbers are the relay's own (its usage batches included, shared per call).
 */
import { createHook } from "node:async_hooks";
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config.js";
import { build } from "../src/server.js";
import { issueBenchToken } from "./issue-bench-token.js";
import { startMockUpstream } from "./mock-upstream.js";

const calls = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 2_000);
const asJson = process.argv.includes("--json");
const CHAT = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello to the benchmark." }], max_tokens: 64 });

interface Work {
  promises: number;
  bytes: number;
}

/** Sends `n` calls one after another on one keep-alive connection. */
function client(url: string, path: string, bearer: string): (n: number) => Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const { hostname, port } = new URL(url);
  const headers = { "content-type": "application/json", authorization: `Bearer ${bearer}`, "content-length": Buffer.byteLength(CHAT) };
  const one = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const req = request({ host: hostname, port, path, method: "POST", agent, headers }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        res.resume();
        res.on("end", resolve);
      });
      req.on("error", reject);
      req.end(CHAT);
    });
  return async (n) => {
    for (let i = 0; i < n; i++) await one();
  };
}

async function measure(send: (n: number) => Promise<void>): Promise<Work> {
  await send(calls);
  let promises = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === "PROMISE") promises++;
    },
  });
  hook.enable();
  await send(calls);
  hook.disable();
  const session = new Session();
  session.connect();
  await session.post("HeapProfiler.enable");
  await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await send(calls);
  const { profile } = await session.post("HeapProfiler.stopSampling");
  session.disconnect();
  let bytes = 0;
  const walk = (node: { selfSize: number; children: unknown[] }): void => {
    bytes += node.selfSize;
    for (const child of node.children) walk(child as typeof node);
  };
  walk(profile.head as unknown as { selfSize: number; children: unknown[] });
  return { promises: promises / calls, bytes: bytes / calls };
}

const dir = mkdtempSync(join(tmpdir(), "relayapi-call-work-"));
const mock = await startMockUpstream({ chunks: 20, delayMs: 5 });
const app = await build(loadConfig({ dataDir: dir, port: 0, logLevel: "silent", ipRpm: 100_000_000, providerBaseUrls: { openai: mock.url } }, {}));
try {
  await app.listen(0, "127.0.0.1");
  const token = await issueBenchToken(app.url, app.adminKey);
  const direct = await measure(client(mock.url, "/v1/chat/completions", "sk-direct"));
  const relayed = await measure(client(app.url, "/api/openai/v1/chat/completions", token));
  const promises = relayed.promises - direct.promises;
  const bytes = relayed.bytes - direct.bytes;
  console.log(
    `per relayed call (bench/call-work.ts, ${calls} calls in one process, the client and mock subtracted): ${promises.toFixed(1)} promises, ${(bytes / 1024).toFixed(1)} KB allocated`,
  );
  if (asJson) console.log(JSON.stringify({ calls, promisesPerCall: promises, bytesPerCall: bytes }));
} finally {
  await app.close();
  mock.server.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
