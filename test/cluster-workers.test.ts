/**
 * `relayapi serve --workers 2` (issue 22.3) on real processes, on the embedded database (the
 * primary owns PGlite and serves it to the workers) and on PostgreSQL: 500 concurrent calls on a
 * cap of 50 forward exactly 50; a revocation stops the token on every worker within 1 s; a
 * worker killed with SIGKILL is replaced and calls go on; SIGTERM to the primary drains every
 * worker, the streams in flight finish, and the usage rows equal the calls the provider saw.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import postgres from "postgres";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mallocTuning } from "../src/cluster/primary.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./support/databases.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { buildRelayBundle, spawnRelay, type SpawnedRelay, workerLines } from "./support/spawn-relay.js";
import { sleep, waitFor } from "./support/wait.js";

const pgUp = await postgresAvailable();
const ADMIN_KEY = "rak_cluster-admin-key-0123456789";
const UPSTREAM_KEY = "sk-cluster-upstream-key-0123456789abcdef";
const MASTER_KEY = randomBytes(32).toString("base64url");

let mock: MockProvider;
let bundle: string;
beforeAll(async () => {
  mock = await startMockProvider();
  bundle = await buildRelayBundle();
});
afterAll(async () => {
  await mock?.close();
});

async function rpc(url: string, method: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await request(`${url}/relayapi.v1.TokenService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify(body),
  });
  const json = (await res.body.json()) as Record<string, unknown>;
  expect(res.statusCode, JSON.stringify(json)).toBe(200);
  return json;
}

async function issue(url: string, maxCalls: number): Promise<{ secret: string; id: string }> {
  const body = await rpc(url, "IssueToken", { provider: "openai", upstreamKey: UPSTREAM_KEY, limits: { maxCalls: String(maxCalls) } });
  return { secret: body.secret as string, id: (body.token as { id: string }).id };
}

const cases = [
  { name: "embedded PGlite, served by the primary", postgres: false },
  { name: "PostgreSQL", postgres: true },
];

describe.each(cases)("serve --workers 2 on $name", ({ postgres: onPostgres }) => {
  const skip = onPostgres && !pgUp;
  let relay: SpawnedRelay;
  let db: TestDatabase | undefined;
  let dataDir: string;
  // Many connections: the primary hands connections to the workers in turn.
  const agent = new Agent({ connections: 64, pipelining: 0 });

  const chat = (secret: string, stream = false, dispatcher: Agent = agent) =>
    request(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", ...(stream ? { "x-mock-delay-ms": "150", "x-mock-chunks": "6" } : {}) },
      body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], ...(stream ? { stream: true } : {}) }),
      dispatcher,
    }).then(async (res) => ({ status: res.statusCode, text: await res.body.text() }));

  beforeAll(async () => {
    if (skip) return;
    if (onPostgres) db = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), "relayapi-workers-"));
    relay = await spawnRelay(
      {
        RELAYAPI_WORKERS: "2",
        RELAYAPI_DATA_DIR: dataDir,
        RELAYAPI_ADMIN_KEY: ADMIN_KEY,
        RELAYAPI_MASTER_KEY: MASTER_KEY,
        RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url,
        RELAYAPI_IP_RPM: "0",
        RELAYAPI_DRAIN_DELAY_MS: "300",
        RELAYAPI_SHUTDOWN_GRACE_MS: "8000",
        ...(db ? { DATABASE_URL: db.url } : {}),
      },
      { label: onPostgres ? "workers-pg" : "workers-pglite", bundle, timeoutMs: 60_000 },
    );
    await waitFor(() => workerLines(relay).length >= 2, 30_000);
  }, 90_000);

  afterAll(async () => {
    if (skip) return;
    await relay?.kill9();
    await agent.close();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  it.skipIf(skip)("500 concurrent calls on a cap of 50 through 2 workers: exactly 50 reach the provider", { timeout: 60_000 }, async () => {
    const { secret } = await issue(relay.url, 50);
    mock.reset();
    const answers = await Promise.all(Array.from({ length: 500 }, () => chat(secret)));
    const statuses = answers.map((a) => a.status);
    // Anything but 200 or 429 is named, so a failure says which answer it was.
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(statuses.filter((s) => s === 200)).toHaveLength(50);
    expect(statuses.filter((s) => s === 429)).toHaveLength(450);
    expect(mock.requests).toHaveLength(50);
    expect(new Set(workerLines(relay).map((w) => w.pid)).size).toBe(2);
  });

  it.skipIf(skip || process.platform !== "linux")("workers start with glibc's mmap threshold fixed, unless the operator set malloc's own", async () => {
    const given = Object.keys(process.env).some((k) => k.startsWith("MALLOC_"));
    for (const { pid } of workerLines(relay)) {
      const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      expect(environ.includes("MALLOC_MMAP_THRESHOLD_=131072")).toBe(!given);
    }
    expect(mallocTuning({ MALLOC_ARENA_MAX: "2" })).toEqual({});
  });

  it.skipIf(skip)(
    "a plan of 20 calls a day: 200 concurrent calls of one subject over 4 tokens and 2 workers forward exactly 20",
    { timeout: 60_000 },
    async () => {
      const res = await request(`${relay.url}/relayapi.v1.AdminService/CreatePlan`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_KEY}` },
        body: JSON.stringify({ plan: { name: "w20", callsPerDay: "20" } }),
      });
      expect(res.statusCode, await res.body.text()).toBe(200);
      // The worker that took CreatePlan applies it at once, the other within a second.
      await sleep(1200);
      const tokens = await Promise.all(
        [0, 1, 2, 3].map(async () => {
          const body = await rpc(relay.url, "IssueToken", {
            provider: "openai",
            upstreamKey: UPSTREAM_KEY,
            subject: "wanda",
            plan: "w20",
            limits: { maxCalls: "100" },
          });
          return body.secret as string;
        }),
      );
      const before = mock.requests.length;
      const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => chat(tokens[i % 4]!)));
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
      expect(statuses.filter((s) => s === 200)).toHaveLength(20);
      expect(mock.requests.length - before).toBe(20);
    },
  );

  it.skipIf(skip)("/metrics answers for the whole relay, whichever worker takes the scrape", { timeout: 30_000 }, async () => {
    // After the first tests: 50 + 20 calls answered 200, spread over both workers.
    const scrapes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const fresh = new Agent({ connections: 1 });
      const res = await request(`${relay.url}/metrics`, { dispatcher: fresh });
      scrapes.push(await res.body.text());
      await fresh.close();
    }
    const served = (text: string) =>
      text
        .split("\n")
        .filter((l) => l.startsWith("relayapi_requests_total{") && l.includes('status="200"'))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
    expect(scrapes.map(served)).toEqual([70, 70, 70, 70]);
    for (const text of scrapes) expect(text).toMatch(/^relayapi_database_up 1$/m);
  });

  it.skipIf(skip)("a revocation stops the token on every worker within 1 s", { timeout: 30_000 }, async () => {
    const { secret, id } = await issue(relay.url, 10_000);
    // Fresh connections, so both workers serve (and lease for) the token.
    const warm = new Agent({ connections: 16 });
    const before = await Promise.all(Array.from({ length: 32 }, () => chat(secret, false, warm)));
    expect(before.every((a) => a.status === 200)).toBe(true);
    await rpc(relay.url, "RevokeToken", { id });
    await sleep(1000);
    const after = await Promise.all(Array.from({ length: 32 }, () => chat(secret, false, warm)));
    expect(after.map((a) => a.status)).toEqual(Array(32).fill(401));
    await warm.close();
  });

  it.skipIf(skip)("a worker killed with SIGKILL is replaced, and calls go on", { timeout: 60_000 }, async () => {
    const { secret } = await issue(relay.url, 10_000);
    const victim = workerLines(relay)[0]!;
    process.kill(victim.pid, "SIGKILL");
    await waitFor(() => workerLines(relay).length >= 3, 30_000);
    expect(relay.stderr()).toContain("worker exited; starting another");
    const fresh = new Agent({ connections: 8 });
    const answers = await Promise.all(Array.from({ length: 16 }, () => chat(secret, false, fresh)));
    expect(answers.map((a) => a.status)).toEqual(Array(16).fill(200));
    await fresh.close();
  });

  it.skipIf(skip)("SIGTERM drains every worker: streams in flight finish, usage rows = calls the provider saw", { timeout: 60_000 }, async () => {
    const { secret } = await issue(relay.url, 10_000);
    const streams = Array.from({ length: 12 }, () => chat(secret, true));
    await waitFor(() => mock.requests.filter((r) => r.body.includes('"stream":true')).length >= 12, 10_000);
    const exit = relay.stop(30_000);
    const done = await Promise.all(streams);
    for (const d of done) {
      expect(d.status).toBe(200);
      expect(d.text).toContain("tok5");
      expect(d.text).toContain("[DONE]");
    }
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(relay.stderr()).not.toContain('usageSpilled":1');
    const seen = mock.requests.length;
    expect(await usageRows()).toBe(seen);
  });

  /** Rows in usage_events since the mock was last reset (the first test reset it). */
  async function usageRows(): Promise<number> {
    if (db) {
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        const [row] = await sql<{ n: string }[]>`select count(*)::text as n from usage_events where status = 200`;
        return Number(row!.n);
      } finally {
        await sql.end();
      }
    }
    const pg = await PGlite.create(join(dataDir, "pgdata"));
    try {
      const { rows } = await pg.query<{ n: string }>("select count(*)::text as n from usage_events where status = 200");
      return Number(rows[0]!.n);
    } finally {
      await pg.close();
    }
  }
});
