/**
 * SIGHUP (the terminal that started the relay closed, an ssh session ended: sent to the whole
 * process group) killed `relayapi serve` outright, Node's default: the primary went without
 * closing PGlite, its workers with it, the streams in flight were cut and the queued usage rows
 * lost. It now shuts down as SIGTERM does, in the primary and in every worker.
 *
 * SIGTERM while the workers were still starting (a rollout that replaces a pod just started)
 * went unheard: a worker listened for the primary's request only once it served, so the request
 * was lost, the workers went on serving, and the primary killed them at its deadline (22 s,
 * SIGKILL, their usage lost). A worker now keeps a request that comes while it starts.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { buildRelayBundle, cleanEnv, issueOn, logLineIn, spawnRelay, type SpawnedRelay, workerLines } from "./support/spawn-relay.js";
import { waitFor } from "./support/wait.js";

const ADMIN_KEY = "rak_probe-signal-admin-key-0123456789";
const UPSTREAM_KEY = "sk-probe-signal-upstream-key-0123456789abcdef";

let mock: MockProvider;
let bundle: string;
const dirs: string[] = [];
const relays: SpawnedRelay[] = [];
const agent = new Agent({ connections: 32, pipelining: 0 });

beforeAll(async () => {
  mock = await startMockProvider();
  bundle = await buildRelayBundle();
});
afterAll(async () => {
  for (const r of relays) await r.kill9();
  for (const r of relays) r.cleanup();
  await agent.close();
  await mock?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const workerPids = (r: SpawnedRelay): number[] => workerLines(r).map((w) => w.pid);

describe.each([{ workers: 2 }, { workers: 1 }])("serve --workers $workers, SIGHUP to every process", ({ workers }) => {
  it("drains as SIGTERM does: streams finish, exit 0, usage rows = calls the provider saw", { timeout: 90_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "relayapi-probe-hup-"));
    dirs.push(dataDir);
    const relay = await spawnRelay(
      {
        RELAYAPI_WORKERS: String(workers),
        RELAYAPI_DATA_DIR: dataDir,
        RELAYAPI_ADMIN_KEY: ADMIN_KEY,
        RELAYAPI_MASTER_KEY: randomBytes(32).toString("base64url"),
        RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url,
        RELAYAPI_IP_RPM: "0",
        RELAYAPI_DRAIN_DELAY_MS: "0",
        RELAYAPI_SHUTDOWN_GRACE_MS: "8000",
      },
      { label: "probe-hup", bundle, timeoutMs: 60_000 },
    );
    relays.push(relay);
    if (workers > 1) await waitFor(() => workerPids(relay).length >= workers, 30_000, "workers");
    const secret = await issueOn(relay.url, ADMIN_KEY, UPSTREAM_KEY, 1000);
    mock.reset();
    const streams = Array.from({ length: 6 }, () =>
      request(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-mock-delay-ms": "200", "x-mock-chunks": "5" },
        body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], stream: true }),
        dispatcher: agent,
      }).then(
        async (res) => ({ status: res.statusCode, text: await res.body.text().catch((e: unknown) => `cut: ${String(e)}`) }),
        (e: unknown) => ({ status: 0, text: String(e) }),
      ),
    );
    await waitFor(() => mock.requests.length >= 6, 10_000, "streams at the provider");
    // A hangup reaches the whole process group: the primary and each worker.
    for (const pid of [relay.pid, ...workerPids(relay)]) process.kill(pid, "SIGHUP");
    const done = await Promise.all(streams);
    for (const d of done) {
      expect(d.status).toBe(200);
      expect(d.text).toContain("[DONE]");
    }
    expect(await relay.exited).toEqual({ code: 0, signal: null });
    const pg = await PGlite.create(join(dataDir, "pgdata"));
    try {
      const { rows } = await pg.query<{ n: string }>("select count(*)::text as n from usage_events where status = 200");
      expect(Number(rows[0]!.n)).toBe(mock.requests.length);
    } finally {
      await pg.close();
    }
  });
});

describe("serve --workers 2, SIGTERM while the workers start", () => {
  it("every worker shuts down in time, none is killed at the deadline", { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "relayapi-probe-early-"));
    dirs.push(dataDir);
    const child = spawn(process.execPath, [bundle, "serve"], {
      env: cleanEnv({
        RELAYAPI_PORT: "0",
        RELAYAPI_HOST: "127.0.0.1",
        RELAYAPI_DATA_DIR: dataDir,
        RELAYAPI_WORKERS: "2",
        RELAYAPI_ADMIN_KEY: ADMIN_KEY,
        RELAYAPI_DRAIN_DELAY_MS: "0",
        RELAYAPI_SHUTDOWN_GRACE_MS: "3000",
      }),
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", () => {});
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.on("exit", (code, signal) => r({ code, signal })));
    try {
      await waitFor(() => logLineIn(stderr, "primary started"), 30_000, "primary started");
      const t0 = Date.now();
      child.kill("SIGTERM");
      expect(await exited).toEqual({ code: 0, signal: null });
      expect(stderr).not.toContain("overran the shutdown deadline");
      // Grace 3 s + the 2 s margin, with room for a slow start: far below the 15 s deadline.
      expect(Date.now() - t0).toBeLessThan(12_000);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
