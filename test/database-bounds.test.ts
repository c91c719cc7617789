/**
 * The database can stall, lock or be missing without the relay hanging or crashing (issue 19,
 * findings 2 and 3; issue 21, finding 3):
 * - a network that swallows bytes: a call gets 503 + Retry-After within the statement timeout
 *   plus a margin, `/readyz` says "database unreachable", and calls succeed again once it heals;
 * - a table lock with a pool of 2: calls get 503 within bounds, `/readyz` says the pool is
 *   exhausted (not that the database is unreachable), 200s again once the lock goes;
 * - every connection is named `relayapi/<instance>` in pg_stat_activity;
 * - three instances started at once on an empty database all become ready (migrations run
 *   under an advisory lock);
 * - start-up errors name the cause and the fix, in one line, without the password;
 * - `relayapi migrate` then `serve --no-auto-migrate`: the split deploy works on PostgreSQL.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./support/databases.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startPgProxy, type PgProxy } from "./support/pg-proxy.js";
import { startRelay, type TestRelay } from "./support/relay.js";
import { buildRelayBundle, cleanEnv, spawnRelay } from "./support/spawn-relay.js";
import { waitFor } from "./support/wait.js";
import { ROOT } from "../scripts/build-server.js";

const pgUp = await postgresAvailable();

/** Short bounds so the suite runs in seconds; the defaults (5 s, 1 s) behave the same, slower. */
const STATEMENT_TIMEOUT_MS = 1000;
const ACQUIRE_TIMEOUT_MS = 500;
/** What a loaded two-core machine may add on top of the bound the relay promises. */
const SLACK_MS = 1500;
/** The client-side margin over the statement timeout (src/db/pg-pool.ts). */
const CLIENT_MARGIN_MS = 1000;

interface Answer {
  status: number;
  ms: number;
  retryAfter: string | null;
}

/** One chat call; a call with no answer within `limitMs` is status 0. */
async function call(url: string, secret: string, limitMs = 12_000): Promise<Answer> {
  const started = Date.now();
  try {
    const res = await fetch(`${url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
      signal: AbortSignal.timeout(limitMs),
    });
    await res.arrayBuffer();
    return { status: res.status, ms: Date.now() - started, retryAfter: res.headers.get("retry-after") };
  } catch {
    return { status: 0, ms: Date.now() - started, retryAfter: null };
  }
}

/** The Connect code and Retry-After of a failing RPC (undefined code: it succeeded). */
async function rpcFailure(rpc: () => Promise<unknown>): Promise<{ code: Code | undefined; retryAfter: string | null; ms: number }> {
  const started = Date.now();
  try {
    await rpc();
    return { code: undefined, retryAfter: null, ms: Date.now() - started };
  } catch (e) {
    const ce = ConnectError.from(e);
    return { code: ce.code, retryAfter: ce.metadata.get("retry-after"), ms: Date.now() - started };
  }
}

async function readyz(url: string): Promise<{ status: number; ms: number; body: { reason?: string } }> {
  const started = Date.now();
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, ms: Date.now() - started, body: (await res.json()) as { reason?: string } };
}

function p99(ms: number[]): number {
  const sorted = [...ms].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
}

describe.skipIf(!pgUp)("a database that stalls", () => {
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
    proxy?.resume();
    await relay?.close();
    await proxy?.close();
    await db?.drop();
    await mock?.close();
  });

  it("answers 503 + Retry-After within the statement timeout, /readyz says unreachable, and heals", { timeout: 40_000 }, async () => {
    relay = await startRelay({
      mock,
      config: { databaseUrl: proxy.urlFor(db.url), dbStatementTimeoutMs: STATEMENT_TIMEOUT_MS, dbConnectTimeoutMs: 1000, leaseMax: 1, tokenCacheMs: 60_000 },
    });
    const { secret } = await relay.issue({ limits: { maxCalls: 1000n } });
    expect((await call(relay.url, secret)).status).toBe(200);
    expect((await readyz(relay.url)).status).toBe(200);

    proxy.stall();
    // Every call needs one statement (leaseMax 1): each must be refused within the bound.
    const answers = await Promise.all([call(relay.url, secret), call(relay.url, secret), call(relay.url, secret)]);
    const ready = await readyz(relay.url);
    const later = await call(relay.url, secret);
    const rpc = await rpcFailure(() => relay!.tokens.listTokens({}));
    console.log(
      `[figures] stalled database: answers in ${[...answers, later].map((a) => `${a.status}/${a.ms} ms`).join(", ")}; /readyz ${ready.status} in ${ready.ms} ms: ${ready.body.reason}`,
    );
    for (const a of [...answers, later]) {
      expect(a.status).toBe(503);
      expect(a.retryAfter).toMatch(/^\d+$/);
      expect(a.ms).toBeLessThan(STATEMENT_TIMEOUT_MS + CLIENT_MARGIN_MS + SLACK_MS);
    }
    // Admin RPCs too: `unavailable` with Retry-After, not `internal` (and not a hang).
    expect(rpc).toMatchObject({ code: Code.Unavailable, retryAfter: expect.stringMatching(/^\d+$/) });
    expect(rpc.ms).toBeLessThan(STATEMENT_TIMEOUT_MS + CLIENT_MARGIN_MS + SLACK_MS);
    expect(ready.status).toBe(503);
    expect(ready.body.reason).toBe("database unreachable");
    expect(ready.ms).toBeLessThan(3000);

    proxy.resume();
    const healed = await waitFor(
      async () => {
        const a = await call(relay!.url, secret, 5000);
        return a.status === 200 ? a : undefined;
      },
      15_000,
      "a 200 after the stall",
      100,
    );
    expect(healed.status).toBe(200);
    expect((await readyz(relay.url)).status).toBe(200);
  });
});

describe.skipIf(!pgUp)("a table lock with a pool of 2", () => {
  let mock: MockProvider;
  let db: TestDatabase;
  let relay: TestRelay | undefined;
  let sql: postgres.Sql | undefined;
  beforeAll(async () => {
    mock = await startMockProvider();
    db = await createTestDatabase();
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await relay?.close();
    await sql?.end({ timeout: 1 });
    await db?.drop();
    await mock?.close();
  });

  it("names every connection relayapi/<instance> in pg_stat_activity", async () => {
    relay = await startRelay({
      mock,
      config: {
        databaseUrl: db.url,
        dbPool: 2,
        dbStatementTimeoutMs: STATEMENT_TIMEOUT_MS,
        dbAcquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
        leaseMax: 1,
        tokenCacheMs: 60_000,
      },
    });
    expect((await readyz(relay.url)).status).toBe(200);
    const rows = await sql!<
      { name: string }[]
    >`select application_name as name from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
    const names = rows.map((r) => r.name);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(name).toMatch(/^relayapi\/.+/);
  });

  it("refuses with 503 within bounds while tokens is locked, /readyz says pool exhausted, then serves again", { timeout: 40_000 }, async () => {
    const url = relay!.url;
    const secrets = await Promise.all(Array.from({ length: 6 }, async () => (await relay!.issue({ limits: { maxCalls: 1000n } })).secret));
    for (const s of secrets) expect((await call(url, s)).status).toBe(200);

    const locker = await sql!.reserve();
    let locked = true;
    const unlock = async (): Promise<void> => {
      if (!locked) return;
      locked = false;
      await locker`rollback`;
      locker.release();
    };
    try {
      await locker`begin`;
      await locker`lock table tokens in access exclusive mode`;
      const started = Date.now();
      // Calls keep coming for 3 s, two per token at a time, while /readyz is asked.
      const answers: Answer[] = [];
      const load = Promise.all(
        secrets.flatMap((s) =>
          [0, 1].map(async () => {
            while (Date.now() - started < 3000) answers.push(await call(url, s, 10_000));
          }),
        ),
      );
      const exhausted = await waitFor(
        async () => {
          const r = await readyz(url);
          return r.status === 503 && r.body.reason?.includes("pool exhausted") ? r : undefined;
        },
        6000,
        "/readyz saying pool exhausted",
        100,
      ).catch((e: unknown) => e as Error);
      await load;
      const rpc = await rpcFailure(() => relay!.tokens.listTokens({}));
      expect(rpc).toMatchObject({ code: Code.Unavailable, retryAfter: expect.stringMatching(/^\d+$/) });
      const ms = answers.map((a) => a.ms);
      console.log(
        `[figures] table lock, pool 2: ${answers.length} calls, statuses ${JSON.stringify(countBy(answers.map((a) => a.status)))}, p99 ${p99(ms)} ms, max ${Math.max(...ms)} ms; /readyz: ${exhausted instanceof Error ? exhausted.message : exhausted.body.reason}`,
      );
      expect(exhausted).not.toBeInstanceOf(Error);
      expect(answers.length).toBeGreaterThan(6);
      for (const a of answers) {
        expect(a.status).toBe(503);
        expect(a.retryAfter).toMatch(/^\d+$/);
      }
      expect(p99(ms)).toBeLessThan(STATEMENT_TIMEOUT_MS + CLIENT_MARGIN_MS + SLACK_MS);
    } finally {
      await unlock();
    }
    const healed = await waitFor(
      async () => {
        const results = await Promise.all(secrets.map((s) => call(url, s, 5000)));
        return results.every((a) => a.status === 200) ? results : undefined;
      },
      10_000,
      "200s after the lock",
      100,
    );
    expect(healed).toHaveLength(6);
    expect((await readyz(url)).status).toBe(200);
  });
});

describe.skipIf(!pgUp)("three instances started at once on an empty database", () => {
  let db: TestDatabase;
  const relays: TestRelay[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await Promise.all(relays.map((r) => r.close()));
    await db?.drop();
  });

  it("all become ready: one migrates, the others wait for it", { timeout: 60_000 }, async () => {
    const masterKey = randomBytes(32).toString("base64url");
    const started = Date.now();
    const results = await Promise.allSettled([0, 1, 2].map(() => startRelay({ config: { databaseUrl: db.url, masterKey } })));
    const ms = Date.now() - started;
    for (const r of results) if (r.status === "fulfilled") relays.push(r.value);
    const failures = results.flatMap((r) => (r.status === "rejected" ? [String((r.reason as Error).message).split("\n")[0]] : []));
    console.log(`[figures] three instances at once: ${relays.length} ready in ${ms} ms; failures: ${JSON.stringify(failures)}`);
    expect(failures).toEqual([]);
    for (const r of relays) expect((await readyz(r.url)).status).toBe(200);
  });
});

describe.skipIf(!pgUp)("start-up errors name the cause", () => {
  let bundle: string;
  let dataDir: string;
  beforeAll(async () => {
    bundle = await buildRelayBundle();
    dataDir = mkdtempSync(join(tmpdir(), "relayapi-dberr-"));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  const run = (args: string[], databaseUrl: string): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [bundle, ...args], {
        cwd: ROOT,
        env: cleanEnv({ DATABASE_URL: databaseUrl, RELAYAPI_DATA_DIR: dataDir, RELAYAPI_PORT: "0" }),
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });

  const missing = `relayapi_missing_${randomBytes(4).toString("hex")}`;
  const cases = [
    {
      name: "a missing database",
      url: `postgres://postgres@127.0.0.1:5432/${missing}`,
      expected: `database "${missing}" does not exist on 127.0.0.1:5432: create it with createdb ${missing}`,
    },
    { name: "a wrong port", url: "postgres://postgres@127.0.0.1:1/relayapi", expected: "cannot connect to 127.0.0.1:1: connection refused" },
    { name: "an unknown user", url: "postgres://relayapi_nobody:s3cret-Pa55word@127.0.0.1:5432/postgres", expected: 'user "relayapi_nobody"' },
  ];
  for (const c of cases) {
    for (const command of ["serve", "migrate"]) {
      it(`${command} with ${c.name}`, { timeout: 20_000 }, async () => {
        const { code, out } = await run([command], c.url);
        console.log(`[figures] ${command}, ${c.name}: exit ${code}: ${out.trim()}`);
        expect(code).toBe(1);
        expect(out).toContain(c.expected);
        expect(out).not.toContain("Failed query");
        expect(out).not.toContain("s3cret-Pa55word");
      });
    }
  }
});

describe.skipIf(!pgUp)("relayapi migrate, then serve --no-auto-migrate", () => {
  const dbs: TestDatabase[] = [];
  afterAll(async () => {
    for (const d of dbs) await d.drop();
  });

  it("migrate prepares an empty database; serve --no-auto-migrate refuses an unmigrated one and serves a migrated one", { timeout: 40_000 }, async () => {
    const bundle = await buildRelayBundle();
    const [empty, migrated] = [await createTestDatabase(), await createTestDatabase()];
    dbs.push(empty, migrated);
    const dataDir = mkdtempSync(join(tmpdir(), "relayapi-migrate-"));
    const run = (args: string[], databaseUrl: string): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [bundle, ...args], {
          cwd: ROOT,
          env: cleanEnv({ DATABASE_URL: databaseUrl, RELAYAPI_DATA_DIR: dataDir, RELAYAPI_PORT: "0" }),
        });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (out += d.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        child.on("exit", (code) => {
          clearTimeout(timer);
          resolve({ code, out });
        });
      });
    try {
      const refused = await run(["serve", "--no-auto-migrate"], empty.url);
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/database migrations not applied \(0\/\d+\) and auto-migration is off: run relayapi migrate first/);
      // Nothing was created: the schema belongs to the migrate job.
      const sql = postgres(empty.url, { max: 1, onnotice: () => {} });
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from information_schema.tables where table_schema = 'public'`;
      await sql.end();
      expect(row?.n).toBe(0);

      const first = await run(["migrate"], migrated.url);
      expect(first).toMatchObject({ code: 0, out: "migrations applied (postgres)\n" });
      expect((await run(["migrate"], migrated.url)).code).toBe(0);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
    const relay = await spawnRelay({ DATABASE_URL: migrated.url, RELAYAPI_AUTO_MIGRATE: "false" }, { bundle });
    try {
      expect((await readyz(relay.url)).status).toBe(200);
    } finally {
      await relay.stop();
      relay.cleanup();
    }
  });
});

function countBy(values: number[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
