/**
 * Operations (issue 5, DESIGN 11): `/metrics` parses as Prometheus text, holds the expected
 * series and no secret; request ids and secret-free logs; `/readyz`; `serve --print-config`;
 * a Postgres outage mid-load (503s only, `/readyz` not ready, recovery without restart, and
 * exactly as many usage rows and counted calls as calls the provider saw); SIGTERM during 20
 * in-flight streams (`/readyz` 503 draining while `/healthz` answers during the drain delay,
 * then new connections refused; all streams complete, exit 0, all usage rows present; more in
 * test/drain.test.ts).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { count, eq } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { openDatabase } from "../src/db/client.js";
import { expectedMigrations } from "../src/db/migrate.js";
import { tokens as tokensTable, usageEvents } from "../src/db/schema/index.js";
import { createLogger } from "../src/log.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./support/databases.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startPgProxy, type PgProxy } from "./support/pg-proxy.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { cleanEnv, logLineIn } from "./support/spawn-relay.js";
import { useRelay } from "./support/use-relay.js";
import { sleep, waitFor } from "./support/wait.js";

const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "relayapi.js");
const POOL_KEYS = ["sk-ops-pool-key-AAAA1111", "sk-ops-pool-key-BBBB2222"];

const chat = (url: string, token: string, headers: Record<string, string> = {}, body: Record<string, unknown> = {}) =>
  fetch(`${url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], ...body }),
  });

describe("metrics, request ids, logs, readiness", () => {
  const { relay, mock } = useRelay({ log: createLogger("debug", (l) => logLines.push(l)) });
  const logLines: string[] = [];
  const secrets: string[] = [UPSTREAM_KEY, ...POOL_KEYS];
  beforeAll(async () => {
    secrets.push(relay.adminKey);
  });

  it("answers /metrics in Prometheus text with the expected series and no token or key", async () => {
    const plain = await relay.issue();
    const limited = await relay.issue({ limits: { rpm: 1 } });
    await relay.admin.createPool({ name: "ops", provider: "openai" });
    const added = await relay.admin.addKeys({ pool: "ops", keys: POOL_KEYS });
    await relay.admin.setKeyEnabled({ id: added.keys[1]!.id, enabled: false });
    const pooled = (await relay.tokens.issueToken({ provider: "openai", credential: { case: "pool", value: "ops" } })).secret;
    secrets.push(plain.secret, limited.secret, pooled);

    for (let i = 0; i < 3; i++) expect((await chat(relay.url, plain.secret)).status).toBe(200);
    const stream = await chat(relay.url, plain.secret, {}, { stream: true });
    expect(await stream.text()).toContain("[DONE]");
    expect((await chat(relay.url, plain.secret, { "x-mock-status": "500" })).status).toBe(500);
    expect((await chat(relay.url, "rai_not-a-real-token")).status).toBe(401);
    expect((await chat(relay.url, limited.secret)).status).toBe(200);
    expect((await chat(relay.url, limited.secret)).status).toBe(429);
    expect((await chat(relay.url, pooled)).status).toBe(200);

    const res = await fetch(`${relay.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const samples = parsePrometheus(text);
    const value = (name: string, labels: Record<string, string> = {}) =>
      samples.find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length,
      )?.value;

    expect(value("relayapi_requests_total", { provider: "openai", status: "200", outcome: "complete" })).toBe(6);
    expect(value("relayapi_requests_total", { provider: "openai", status: "500", outcome: "upstream_error" })).toBe(1);
    expect(value("relayapi_upstream_latency_seconds_count", { provider: "openai" })).toBe(7);
    expect(value("relayapi_upstream_latency_seconds_bucket", { provider: "openai", le: "+Inf" })).toBe(7);
    expect(value("relayapi_relay_overhead_seconds_count")).toBe(7);
    expect(value("relayapi_relay_overhead_seconds_sum")).toBeGreaterThan(0);
    expect(value("relayapi_limit_rejections_total", { scope: "token" })).toBe(1);
    expect(value("relayapi_limit_rejections_total", { scope: "ip" })).toBe(0);
    expect(value("relayapi_pool_keys", { pool: "ops", provider: "openai", state: "enabled" })).toBe(1);
    expect(value("relayapi_pool_keys", { pool: "ops", provider: "openai", state: "disabled" })).toBe(1);
    expect(value("relayapi_pool_keys", { pool: "ops", provider: "openai", state: "cooling" })).toBe(0);
    expect(value("relayapi_usage_queue_depth")).toBeGreaterThanOrEqual(0);
    expect(value("relayapi_usage_dropped_total")).toBe(0);
    expect(value("process_cpu_user_seconds_total")).toBeGreaterThan(0);
    // A second scrape adds no phantom rejections (counters collected as deltas).
    const again = parsePrometheus(await (await fetch(`${relay.url}/metrics`)).text());
    expect(again.find((s) => s.name === "relayapi_limit_rejections_total" && s.labels.scope === "token")?.value).toBe(1);

    for (const s of secrets) expect(text).not.toContain(s);
    for (const s of samples) {
      for (const v of Object.values(s.labels)) expect(v).toMatch(/^[a-z0-9_.+-]{1,64}$|^\+Inf$/i);
    }
  });

  it("gives every /api answer a request id, keeps a sane incoming one and the provider's own", async () => {
    const { secret } = await relay.issue();
    const fresh = await chat(relay.url, secret);
    expect(fresh.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const mine = await chat(relay.url, secret, { "x-request-id": "req-abc_123" });
    expect(mine.headers.get("x-request-id")).toBe("req-abc_123");
    const insane = await chat(relay.url, secret, { "x-request-id": "a b<script>" + "x".repeat(200) });
    expect(insane.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const refused = await chat(relay.url, "rai_nope", { "x-request-id": "req-refused-1" });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("x-request-id")).toBe("req-refused-1");
    mock.failNext(200, { id: "x", object: "chat.completion", choices: [] }, { "x-request-id": "upstream-req-9" });
    const upstream = await chat(relay.url, secret, { "x-request-id": "req-with-upstream" });
    expect(upstream.headers.get("x-request-id")).toBe("upstream-req-9");
    expect(upstream.headers.get("x-relay-request-id")).toBe("req-with-upstream");
    secrets.push(secret);
  });

  it("logs one debug line per finished call with ids and no secret", async () => {
    const { secret, id } = await relay.issue();
    secrets.push(secret);
    await chat(relay.url, secret, { "x-request-id": "req-logged-1" });
    const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.requestId === "req-logged-1" && l.msg === "call finished");
    expect(line).toMatchObject({ level: "debug", tokenId: id, provider: "openai", status: 200, outcome: "COMPLETE" });
    expect(line?.latencyMs).toEqual(expect.any(Number));
    const refusedLine = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.requestId === "req-refused-1");
    expect(refusedLine).toMatchObject({ msg: "request refused", status: 401, code: "unauthenticated" });
    const all = logLines.join("");
    for (const s of secrets) expect(all).not.toContain(s);
  });

  it("answers /readyz with each check", async () => {
    const res = await fetch(`${relay.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: "ready",
      checks: { database: "ok", migrations: `${expectedMigrations()}/${expectedMigrations()}`, redis: "not configured" },
    });
  });
});

describe("serve --print-config", () => {
  it("prints the effective config (file < env < flags) with secrets masked and exits 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "relayapi-ops-"));
    try {
      const file = join(dir, "relay.json");
      writeFileSync(file, JSON.stringify({ ipRpm: 10, maxConcurrency: 7, logLevel: "warn", adminKey: "rak_file-admin-secret" }));
      const env = {
        ...cleanEnv(),
        RELAYAPI_MAX_CONCURRENCY: "8",
        RELAYAPI_MASTER_KEY: "master-env-secret-0123456789",
        DATABASE_URL: "postgres://relay:db-pass-secret@db.internal/relay",
        REDIS_URL: "redis://:redis-pass-secret@cache.internal:6379",
      };
      const out = await runCli(["serve", "--print-config", "--config", file, "--ip-rpm", "20", "--trust-proxy", "10.0.0.1,10.1.0.0/16"], env);
      expect(out.code).toBe(0);
      for (const s of ["rak_file-admin-secret", "master-env-secret", "db-pass-secret", "redis-pass-secret"]) expect(out.stdout).not.toContain(s);
      const printed = JSON.parse(out.stdout) as Record<string, unknown>;
      expect(printed).toMatchObject({
        ipRpm: 20, // flag over file
        maxConcurrency: 8, // env over file
        logLevel: "warn", // file over default
        trustProxy: ["10.0.0.1", "10.1.0.0/16"],
        adminKey: "[redacted]",
        masterKey: "[redacted]",
        databaseUrl: "postgres://relay:****@db.internal/relay",
        redisUrl: "redis://:****@cache.internal:6379",
      });
      const bad = await runCli(["serve", "--print-config", "--config", file, "--log-level", "loud"], env);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--log-level must be one of/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const pgUp = await postgresAvailable();

describe.skipIf(!pgUp)("PostgreSQL stops mid-load", () => {
  let mock: MockProvider;
  let db: TestDatabase;
  let proxy: PgProxy;
  let relay: TestRelay | undefined;
  beforeAll(async () => {
    mock = await startMockProvider();
    db = await createTestDatabase();
    proxy = await startPgProxy(new URL(db.url));
  });
  afterAll(async () => {
    await relay?.close();
    await proxy?.close();
    await db?.drop();
    await mock?.close();
  });

  it("answers 503 while it is down, recovers without a restart, and records every call exactly", { timeout: 120_000 }, async () => {
    // Default call leasing (blocks of up to 256): calls covered by a block leased before the stop
    // are still served during the outage (they were counted then); the counts must stay exact.
    relay = await startRelay({ mock, config: { databaseUrl: proxy.urlFor(db.url) } });
    const { secret, id } = await relay.issue({ limits: { maxCalls: 1_000_000n } });
    mock.reset();
    const url = relay.url;
    const results: { status: number; body: string; at: number }[] = [];
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        const res = await chat(url, secret);
        const body = await res.text();
        results.push({ status: res.status, body: res.status === 200 ? "" : body, at: Date.now() });
      }
    };
    const workers = Array.from({ length: 4 }, () => worker());
    // Handled from the start, and stopped if the test fails: a worker must never outlive the
    // test and fetch from a relay afterAll closed (an unhandled rejection: issue 21, finding 2).
    const allWorkers = Promise.all(workers);
    allWorkers.catch(() => (running = false));
    onTestFinished(() => {
      running = false;
    });

    await sleep(1000);
    const stoppedAt = Date.now();
    await proxy.stop();
    const notReady = await pollReady(url, false, 20_000);
    expect(notReady.status).toBe(503);
    expect(notReady.body).toMatchObject({ status: "not ready", reason: "database unreachable" });
    await waitFor(() => results.some((r) => r.status === 503 && r.at > stoppedAt), 20_000);
    await sleep(1500); // down for a while: every call that needs the database is refused

    await proxy.start();
    const restartedAt = Date.now();
    expect((await pollReady(url, true, 30_000)).status).toBe(200);
    await waitFor(() => results.filter((r) => r.status === 200 && r.at > restartedAt).length >= 20, 30_000);
    running = false;
    await allWorkers;

    // Only successes and 503s: no other 5xx, and no call blamed on the client.
    expect(results.filter((r) => r.status !== 200 && r.status !== 503)).toEqual([]);
    const refused = results.filter((r) => r.status === 503);
    expect(refused.length).toBeGreaterThanOrEqual(8);
    for (const r of refused) {
      expect(JSON.parse(r.body)).toEqual({ error: { message: "database unavailable", type: expect.any(String), param: null, code: expect.any(String) } });
    }

    // No counted-but-unrecorded call: rows == calls the provider saw == calls counted.
    await flushWithRetry(relay);
    const seen = mock.requests.length;
    expect(seen).toBe(results.filter((r) => r.status === 200).length);
    expect(relay.calls).toHaveLength(seen);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [rows] = await sql<{ n: number }[]>`select count(*)::int as n from usage_events where token_id = ${id}`;
      expect(rows?.n).toBe(seen);
      await relay.close(); // gives leased, unused calls back
      relay = undefined;
      const [token] = await sql<{ used: number }[]>`select used from tokens where id = ${id}`;
      expect(Number(token?.used)).toBe(seen);
    } finally {
      await sql.end();
    }
  });
});

describe("SIGTERM during 20 in-flight streams", () => {
  it("drains, lets every stream finish, writes every usage row and exits 0 within the deadline", { timeout: 180_000 }, async () => {
    const mock = await startMockProvider();
    const dir = mkdtempSync(join(tmpdir(), "relayapi-ops-"));
    const adminKey = "rak_ops-admin-key-0123456789";
    const graceMs = 10_000;
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--data-dir", dir, "--log-level", "info"], {
      cwd: ROOT,
      env: cleanEnv({
        RELAYAPI_ADMIN_KEY: adminKey,
        RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url,
        RELAYAPI_SHUTDOWN_GRACE_MS: String(graceMs),
        RELAYAPI_DRAIN_DELAY_MS: "1000",
        RELAYAPI_IP_RPM: "0",
      }),
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const listening = await waitFor(() => logLine(stderr, "relay listening"), 60_000);
      const url = String(listening.url);
      const issued = await fetch(`${url}/relayapi.v1.TokenService/IssueToken`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${adminKey}` },
        body: JSON.stringify({ provider: "openai", upstreamKey: UPSTREAM_KEY }),
      });
      expect(issued.status, `${await issued.clone().text()}\n${stderr}`).toBe(200);
      const { secret, token } = (await issued.json()) as { secret: string; token: { id: string } };

      let started = 0;
      const streams = Array.from({ length: 20 }, async () => {
        const res = await chat(url, secret, { "x-mock-chunks": "10", "x-mock-delay-ms": "150" }, { stream: true });
        const reader = res.body!.getReader();
        let text = "";
        let first = true;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          text += Buffer.from(value).toString();
          if (first) started++;
          first = false;
        }
        return { status: res.status, text };
      });
      // Handled from the start: a stream failing early fails the test here, never as an
      // unhandled rejection while the test waits for something else (issue 21, finding 2).
      const allStreams = Promise.all(streams);
      allStreams.catch(() => {});
      await waitFor(() => started === 20 || undefined, 60_000);
      const termAt = Date.now();
      child.kill("SIGTERM");
      await waitFor(() => logLine(stderr, "shutting down"), 10_000);
      // Draining: still accepting, /readyz says so to the balancer, /healthz still answers.
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: "draining" });
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      // Then stopped accepting: a new connection is refused while the streams go on.
      await waitFor(() => logLine(stderr, "stopped accepting"), 10_000);
      expect(await connectError(url)).toBe("ECONNREFUSED");

      const done = await allStreams;
      for (const s of done) {
        expect(s.status, `${s.text}\n${stderr}`).toBe(200);
        expect(s.text).toContain("tok9 ");
        expect(s.text.trimEnd().endsWith("data: [DONE]")).toBe(true);
      }
      expect(await exited).toBe(0);
      expect(Date.now() - termAt).toBeLessThan(graceMs);
      expect(logLine(stderr, "shut down")).toMatchObject({ usageDropped: 0 });
      for (const s of [adminKey, secret, UPSTREAM_KEY]) expect(stderr).not.toContain(s);

      const database = await openDatabase({ dataDir: dir });
      try {
        const rows = await database.db
          .select({ outcome: usageEvents.outcome, n: count() })
          .from(usageEvents)
          .where(eq(usageEvents.tokenId, token.id))
          .groupBy(usageEvents.outcome);
        expect(rows).toEqual([{ outcome: Outcome.COMPLETE, n: 20 }]);
        const [row] = await database.db.select({ used: tokensTable.used }).from(tokensTable).where(eq(tokensTable.id, token.id));
        expect(row?.used).toBe(20);
      } finally {
        await database.close();
      }
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await mock.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// --- helpers ---

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/;
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(?:,|$)/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Parses the text format strictly: well-formed HELP/TYPE lines, every sample of a typed family. */
function parsePrometheus(text: string): Sample[] {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      expect(m, `comment line: ${line}`).not.toBeNull();
      expect(m![2]).toMatch(METRIC_NAME);
      if (m![1] === "TYPE") {
        expect(TYPES.has(m![3]!), `type in: ${line}`).toBe(true);
        expect(types.has(m![2]!), `one TYPE per family: ${line}`).toBe(false);
        types.set(m![2]!, m![3]!);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    expect(m, `sample line: ${line}`).not.toBeNull();
    const [, name, rawLabels = "", rawValue] = m!;
    const labels: Record<string, string> = {};
    let rest = rawLabels;
    while (rest.length > 0) {
      const l = LABEL.exec(rest);
      expect(l, `labels in: ${line}`).not.toBeNull();
      labels[l![1]!] = l![2]!;
      rest = rest.slice(l![0].length);
    }
    // Prometheus reads values with Go's ParseFloat: NaN and Inf in any letter case (prom-client
    // writes "Nan" for an event-loop histogram with no samples yet).
    const lower = rawValue!.toLowerCase();
    const value = lower === "+inf" || lower === "inf" ? Infinity : lower === "-inf" ? -Infinity : lower === "nan" ? NaN : Number(rawValue);
    expect(lower === "nan" || !Number.isNaN(value), `value in: ${line}`).toBe(true);
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, "");
    expect(types.has(family), `TYPE declared for ${name}`).toBe(true);
    samples.push({ name: name!, labels, value });
  }
  expect(samples.length).toBeGreaterThan(0);
  return samples;
}

function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

const logLine = logLineIn;

/** The error code of a new TCP connection to `url` ("" when it connects). */
function connectError(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    socket.once("connect", () => {
      socket.destroy();
      resolve("");
    });
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
}

async function pollReady(url: string, ready: boolean, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${url}/readyz`);
    const body: unknown = await res.json();
    if ((res.status === 200) === ready) return { status: res.status, body };
    if (Date.now() > deadline) throw new Error(`/readyz still ${res.status} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

async function flushWithRetry(relay: TestRelay): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await relay.app.usage.flush();
      return;
    } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(250);
    }
  }
}
