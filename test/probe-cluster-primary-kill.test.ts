/**
 * `serve --workers 2` on the embedded database, the primary killed with SIGKILL (OOM killer, an
 * operator's `kill -9`): the workers must not vanish with it. Node's cluster makes a worker
 * whose IPC channel drops exit at once (process.exit(0) in its own 'disconnect' handler), which
 * cut the streams in flight without their end and lost every usage row still queued in memory.
 * A worker now shuts down as on SIGTERM: its streams finish, the usage it cannot write (the
 * database went with the primary) is spilled to the data directory, and the next start writes
 * it, so usage rows = calls the provider saw.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { buildRelayBundle, issueOn, spawnRelay, type SpawnedRelay, workerLines } from "./support/spawn-relay.js";
import { waitFor } from "./support/wait.js";

const ADMIN_KEY = "rak_probe-kill-admin-key-0123456789";
const UPSTREAM_KEY = "sk-probe-kill-upstream-key-0123456789abcdef";
const MASTER_KEY = randomBytes(32).toString("base64url");

let mock: MockProvider;
let bundle: string;
let dataDir: string;
const relays: SpawnedRelay[] = [];
const agent = new Agent({ connections: 32, pipelining: 0 });

beforeAll(async () => {
  mock = await startMockProvider();
  bundle = await buildRelayBundle();
  dataDir = mkdtempSync(join(tmpdir(), "relayapi-probe-kill-"));
});
afterAll(async () => {
  for (const r of relays) await r.kill9();
  for (const r of relays) r.cleanup();
  await agent.close();
  await mock?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function start(workers: number): Promise<SpawnedRelay> {
  return spawnRelay(
    {
      RELAYAPI_WORKERS: String(workers),
      RELAYAPI_DATA_DIR: dataDir,
      RELAYAPI_ADMIN_KEY: ADMIN_KEY,
      RELAYAPI_MASTER_KEY: MASTER_KEY,
      RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url,
      RELAYAPI_IP_RPM: "0",
      RELAYAPI_DRAIN_DELAY_MS: "0",
      RELAYAPI_SHUTDOWN_GRACE_MS: "8000",
    },
    { label: "probe-kill", bundle, timeoutMs: 60_000 },
  ).then((r) => {
    relays.push(r);
    return r;
  });
}

const workerPids = (r: SpawnedRelay): number[] => workerLines(r).map((w) => w.pid);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("serve --workers 2 on PGlite, the primary killed with SIGKILL", () => {
  it("streams in flight finish and no usage row is lost: the next start writes what the workers spilled", { timeout: 90_000 }, async () => {
    const relay = await start(2);
    await waitFor(() => workerPids(relay).length >= 2, 30_000, "two workers");
    const secret = await issueOn(relay.url, ADMIN_KEY, UPSTREAM_KEY, 1000);
    mock.reset();
    const chat = (stream: boolean) =>
      request(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${secret}`,
          "content-type": "application/json",
          ...(stream ? { "x-mock-delay-ms": "200", "x-mock-chunks": "6" } : {}),
        },
        body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], ...(stream ? { stream: true } : {}) }),
        dispatcher: agent,
      }).then(
        async (res) => ({ status: res.statusCode, text: await res.body.text().catch((e: unknown) => `cut: ${String(e)}`) }),
        (e: unknown) => ({ status: 0, text: String(e) }),
      );
    // Calls answered just now: their usage rows wait in the workers' queues (written every 250 ms).
    const quick = await Promise.all(Array.from({ length: 10 }, () => chat(false)));
    expect(quick.map((a) => a.status)).toEqual(Array(10).fill(200));
    const streams = Array.from({ length: 8 }, () => chat(true));
    await waitFor(() => mock.requests.filter((r) => r.body.includes('"stream":true')).length >= 8, 10_000, "streams at the provider");
    const pids = workerPids(relay);
    await relay.kill9();

    const done = await Promise.all(streams);
    for (const d of done) {
      expect(d.status).toBe(200);
      expect(d.text).toContain("[DONE]");
    }
    // The workers shut down on their own, and say so.
    await waitFor(() => pids.every((p) => !alive(p)), 30_000, "workers exited");
    expect(relay.stderr()).toContain('"signal":"primary gone"');
    const seen = mock.requests.length;
    expect(seen).toBe(18);

    // The next start (one process is enough) writes the spilled rows, then stops cleanly.
    const next = await start(1);
    expect(await next.stop(30_000)).toEqual({ code: 0, signal: null });
    const pg = await PGlite.create(join(dataDir, "pgdata"));
    try {
      const { rows } = await pg.query<{ n: string }>("select count(*)::text as n from usage_events where status = 200");
      expect(Number(rows[0]!.n)).toBe(seen);
    } finally {
      await pg.close();
    }
  });
});
