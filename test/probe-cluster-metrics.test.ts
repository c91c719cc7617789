/**
 * `/metrics` under `serve --workers 2` when a worker dies: the primary summed the counters of the
 * live workers only, so a worker killed (and replaced) took its counts with it and the relay's
 * relayapi_requests_total went down. Prometheus reads any decrease as a counter reset and counts
 * the whole remaining total again: every worker restart drew a spike in rate() graphs and fired
 * rate alerts. The primary now keeps a dead worker's last collected counters and histograms, so
 * the sums never go down (src/cluster/cluster-metrics.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRelayBundle, spawnRelay, type SpawnedRelay } from "./support/spawn-relay.js";
import { waitFor } from "./support/wait.js";

let relay: SpawnedRelay | undefined;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "relayapi-probe-metrics-"));
  relay = await spawnRelay(
    {
      RELAYAPI_WORKERS: "2",
      RELAYAPI_DATA_DIR: dataDir,
      RELAYAPI_ADMIN_KEY: "rak_probe-metrics-admin-key-0123456789",
      RELAYAPI_MASTER_KEY: randomBytes(32).toString("base64url"),
      RELAYAPI_IP_RPM: "0",
      RELAYAPI_DRAIN_DELAY_MS: "0",
    },
    { label: "probe-metrics", bundle: await buildRelayBundle(), timeoutMs: 60_000 },
  );
}, 90_000);
afterAll(async () => {
  await relay?.stop(30_000);
  rmSync(dataDir, { recursive: true, force: true });
});

function workers(): Array<{ pid: number }> {
  return (relay?.stderr() ?? "")
    .split("\n")
    .filter((l) => l.includes('"worker listening"'))
    .map((l) => JSON.parse(l) as { pid: number });
}

/** A fresh connection per request: the primary hands each to the next worker. */
async function get(path: string): Promise<string> {
  const fresh = new Agent({ connections: 1 });
  try {
    const res = await request(`${relay!.url}${path}`, { dispatcher: fresh });
    return await res.body.text();
  } finally {
    await fresh.close();
  }
}

/** relayapi_responses_total (every answer, by route and status) summed over every label set. */
async function requestsTotal(): Promise<number> {
  return (await get("/metrics"))
    .split("\n")
    .filter((l) => l.startsWith("relayapi_responses_total{"))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

describe("serve --workers 2, /metrics across a worker's death", () => {
  it("the relay's request counter never goes down when a worker is killed and replaced", { timeout: 90_000 }, async () => {
    await waitFor(() => workers().length >= 2, 30_000, "two workers");
    // Calls land on both workers (an unknown provider: a 404 counted like any answer).
    for (let i = 0; i < 20; i++) await get("/api/no-such-provider/v1/models");
    const before = await requestsTotal();
    expect(before).toBeGreaterThanOrEqual(20);
    process.kill(workers()[0]!.pid, "SIGKILL");
    await waitFor(() => workers().length >= 3, 30_000, "a replacement worker");
    const after = await requestsTotal();
    expect(after).toBeGreaterThanOrEqual(before);
  });
});
