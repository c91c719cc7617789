/**
 * `serve --workers 2`: a worker whose event loop stops (an endless loop, a stopped process:
 * here SIGSTOP) kept its place for good. The primary saw no exit, so it never replaced it; the
 * connection handed to it hung, /metrics waited on it at every scrape, and the relay ran on one
 * worker fewer with nothing in the logs. The primary now pings each listening worker over the
 * cluster channel; one silent for 30 s is killed (SIGKILL, as a liveness probe would) and
 * replaced like any worker that died.
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
  dataDir = mkdtempSync(join(tmpdir(), "relayapi-probe-hung-"));
  relay = await spawnRelay(
    {
      RELAYAPI_WORKERS: "2",
      RELAYAPI_DATA_DIR: dataDir,
      RELAYAPI_ADMIN_KEY: "rak_probe-hung-admin-key-0123456789",
      RELAYAPI_MASTER_KEY: randomBytes(32).toString("base64url"),
      RELAYAPI_IP_RPM: "0",
    },
    { label: "probe-hung", bundle: await buildRelayBundle(), timeoutMs: 60_000 },
  );
}, 90_000);
afterAll(async () => {
  for (const w of workers()) {
    try {
      process.kill(w.pid, "SIGCONT");
    } catch {
      // gone
    }
  }
  await relay?.kill9();
  for (const w of workers()) {
    try {
      process.kill(w.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

function workers(): Array<{ worker: number; pid: number }> {
  return (relay?.stderr() ?? "")
    .split("\n")
    .filter((l) => l.includes('"worker listening"'))
    .map((l) => JSON.parse(l) as { worker: number; pid: number });
}

describe("serve --workers 2, a worker whose event loop stops", () => {
  it("is killed and replaced by the primary, and every new connection is served again", { timeout: 90_000 }, async () => {
    await waitFor(() => workers().length >= 2, 30_000, "two workers");
    const victim = workers()[0]!;
    process.kill(victim.pid, "SIGSTOP");
    await waitFor(() => workers().length >= 3, 60_000, "a third worker listening");
    const log = relay!.stderr();
    expect(log).toContain('"msg":"worker unresponsive; killed"');
    expect(log).toContain("worker exited; starting another");
    // The new set of workers answers every fresh connection.
    const answers: number[] = [];
    for (let i = 0; i < 8; i++) {
      const fresh = new Agent({ connections: 1 });
      const res = await request(`${relay!.url}/healthz`, { dispatcher: fresh, headersTimeout: 3_000 }).catch(() => undefined);
      answers.push(res?.statusCode ?? 0);
      await res?.body.text();
      await fresh.close();
    }
    expect(answers).toEqual(Array(8).fill(200));
  });
});
