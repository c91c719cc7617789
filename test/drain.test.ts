/**
 * Shutdown that drains (issue 19, findings 1 and 2), on real relay processes (`relayapi serve`):
 *
 * - a rolling restart of two instances on one PostgreSQL under a round-robin load with keep-alive
 *   clients: `/readyz` 503 "draining" while `/healthz` is 200 and the listener still accepts for
 *   RELAYAPI_DRAIN_DELAY_MS; no request sent before the listener closed is reset; every stream
 *   finishes (or ends with `event: error`); usage rows = calls counted = calls the provider saw;
 * - a request sent on an idle keep-alive connection during the drain is answered, and a
 *   connection that never sent a byte does not hold the shutdown to the grace;
 * - a stream longer than the grace ends with the provider-shaped `event: error` and a TRUNCATED
 *   row with the usage seen so far (the bytes forwarded; the LLM tokens the provider had
 *   reported before the cut: Anthropic's message_start, nothing for OpenAI's last-event usage);
 * - with the database stalled (a proxy that swallows bytes) the relay exits within grace + 2 s,
 *   the usage it could not write goes to a spill file (0600, no secret) that the next start
 *   writes to the database and deletes, skipping lines a crash left half written.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect as connectH2 } from "node:http2";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./support/databases.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startPgProxy } from "./support/pg-proxy.js";
import { buildRelayBundle, spawnRelay, type SpawnedRelay } from "./support/spawn-relay.js";
import { sleep } from "./support/wait.js";

const DRAIN_MS = 1000;
const pgUp = await postgresAvailable();
const ADMIN_KEY = "rak_drain-admin-key-0123456789";
const UPSTREAM_KEY = "sk-drain-upstream-key-0123456789abcdef";
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

function relayEnv(extra: Record<string, string>): Record<string, string> {
  return {
    RELAYAPI_ADMIN_KEY: ADMIN_KEY,
    RELAYAPI_MASTER_KEY: MASTER_KEY,
    RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url,
    RELAYAPI_PROVIDER_ANTHROPIC_BASE_URL: mock.url,
    RELAYAPI_IP_RPM: "0",
    RELAYAPI_DRAIN_DELAY_MS: String(DRAIN_MS),
    ...extra,
  };
}

async function issueToken(url: string, provider = "openai"): Promise<{ secret: string; id: string }> {
  const res = await request(`${url}/relayapi.v1.TokenService/IssueToken`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ provider, upstreamKey: UPSTREAM_KEY }),
  });
  const body = (await res.body.json()) as { secret: string; token: { id: string } };
  expect(res.statusCode).toBe(200);
  return { secret: body.secret, id: body.token.id };
}

const chatBody = (stream: boolean) => JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], ...(stream ? { stream: true } : {}) });

function errCode(e: unknown): string {
  const err = e as { code?: unknown; name?: unknown; message?: unknown; cause?: { code?: unknown } };
  return String(err.code ?? err.cause?.code ?? err.name ?? err.message);
}

/** When the relay's listener closed: the `time` of its "stopped accepting" log line. */
function listenerClosedAt(r: SpawnedRelay): number {
  // Without that line (a relay that closes at the signal), the signal's own line.
  return logTime(r.logLine("stopped accepting")) ?? logTime(r.logLine("shutting down")) ?? Number.POSITIVE_INFINITY;
}

/** A log line's `time` in epoch milliseconds (pino writes a number or an ISO string). */
function logTime(line: Record<string, unknown> | undefined): number | undefined {
  const t = line?.time;
  return typeof t === "number" ? t : typeof t === "string" ? Date.parse(t) : undefined;
}

describe.skipIf(!pgUp)("SIGTERM drains (two instances on one PostgreSQL)", () => {
  let db: TestDatabase;
  const procs: SpawnedRelay[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill9()));
    for (const p of procs) p.cleanup();
    await db?.drop();
  });

  it("rolling restart under load: /readyz 503 while /healthz 200, no reset before the listener closed, rows = counted calls", { timeout: 60_000 }, async () => {
    const env = relayEnv({ DATABASE_URL: db.url, RELAYAPI_SHUTDOWN_GRACE_MS: "3000" });
    const spawnOne = async (label: string) => {
      const p = await spawnRelay(env, { label, bundle });
      procs.push(p);
      return p;
    };
    const a = await spawnOne("A");
    const b = await spawnOne("B");
    const { secret, id } = await issueToken(a.url);
    mock.reset();

    // Keep-alive clients: a few connections per instance, reused between calls.
    const agent = new Agent({ connections: 8, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
    const live: SpawnedRelay[] = [a, b];
    const results: { to: string; sentAt: number; status?: number; text?: string; stream: boolean; error?: string }[] = [];
    let running = true;
    let turn = 0;
    const worker = async (): Promise<void> => {
      while (running) {
        const to = live[turn++ % live.length];
        if (to === undefined) return;
        const stream = turn % 3 === 0;
        const sentAt = Date.now();
        try {
          const res = await request(`${to.url}/api/openai/v1/chat/completions`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${secret}`,
              "content-type": "application/json",
              ...(stream ? { "x-mock-chunks": "5", "x-mock-delay-ms": "60" } : {}),
            },
            body: chatBody(stream),
            dispatcher: agent,
          });
          results.push({ to: to.label, sentAt, status: res.statusCode, text: await res.body.text(), stream });
        } catch (e) {
          const code = errCode(e);
          // Refused at connect: nothing was sent. A balancer would route it elsewhere; so do we.
          if (code === "ECONNREFUSED") {
            const i = live.indexOf(to);
            if (i !== -1) live.splice(i, 1);
            continue;
          }
          results.push({ to: to.label, sentAt, stream, error: code });
        }
        // Think time: connections sit idle in the pool between calls, as with real clients.
        await sleep(Math.random() * 20);
      }
    };
    const workers = Array.from({ length: 16 }, () => worker());
    // Attached at once: a failing worker must fail the test here, not as an unhandled rejection.
    const allDone = Promise.all(workers);

    const probes: { to: string; at: number; path: string; status?: number; body?: string; error?: string }[] = [];
    const probe = async (r: SpawnedRelay, until: Promise<unknown>): Promise<void> => {
      let over = false;
      void until.then(() => (over = true));
      while (!over) {
        for (const path of ["/readyz", "/healthz"]) {
          const at = Date.now();
          try {
            const res = await request(`${r.url}${path}`, { reset: true });
            probes.push({ to: r.label, at, path, status: res.statusCode, body: await res.body.text() });
          } catch (e) {
            probes.push({ to: r.label, at, path, error: errCode(e) });
          }
        }
        await sleep(50);
      }
    };
    const roll = async (old: SpawnedRelay, label: string): Promise<number> => {
      const fresh = await spawnOne(label);
      live.push(fresh);
      await sleep(300);
      const termAt = Date.now();
      old.child.kill("SIGTERM");
      await Promise.all([probe(old, old.exited), old.exited]);
      const i = live.indexOf(old);
      if (i !== -1) live.splice(i, 1);
      expect((await old.exited).code).toBe(0);
      return Date.now() - termAt;
    };

    await sleep(700);
    const aMs = await roll(a, "A2");
    const bMs = await roll(b, "B2");
    await sleep(300);
    running = false;
    await allDone;
    await agent.close();
    const a2 = procs.find((p) => p.label === "A2")!;
    const b2 = procs.find((p) => p.label === "B2")!;
    expect((await a2.stop()).code).toBe(0);
    expect((await b2.stop()).code).toBe(0);

    const failures = results.filter((r) => r.error !== undefined);
    const beforeClose = failures.filter((r) => {
      const old = r.to === "A" ? a : r.to === "B" ? b : undefined;
      return old === undefined || r.sentAt < listenerClosedAt(old);
    });
    console.log(
      `[drain] rolling restart: ${results.length} calls, ${failures.length} network errors (${beforeClose.length} sent before the listener closed: ${[...new Set(failures.map((f) => f.error))].join(",")}); SIGTERM->exit A ${aMs} ms, B ${bMs} ms`,
    );
    // Probes: during the drain delay /readyz says draining and /healthz stays 200.
    for (const old of [a, b]) {
      const closedAt = listenerClosedAt(old);
      const termLine = old.logLine("shutting down");
      expect(termLine, old.stderr()).toBeDefined();
      const during = probes.filter((p) => p.to === old.label && p.at > logTime(termLine)! + 50 && p.at < closedAt - 50);
      expect(during.length, JSON.stringify(probes.filter((p) => p.to === old.label))).toBeGreaterThanOrEqual(4);
      for (const p of during) {
        if (p.path === "/healthz") expect(p, JSON.stringify(p)).toMatchObject({ status: 200 });
        else {
          expect(p, JSON.stringify(p)).toMatchObject({ status: 503 });
          expect(JSON.parse(p.body!)).toMatchObject({ status: "draining" });
        }
      }
      expect(closedAt - logTime(termLine)!).toBeGreaterThanOrEqual(DRAIN_MS - 50);
    }

    expect(beforeClose).toEqual([]);
    const answered = results.filter((r) => r.status !== undefined);
    expect(answered.length).toBeGreaterThan(50);
    for (const r of answered) {
      expect(r.status, r.text).toBe(200);
      if (r.stream) expect(r.text!.trimEnd().endsWith("data: [DONE]") || r.text!.includes("event: error"), r.text).toBe(true);
    }

    // Every call the provider saw has its row, and the count in the database matches.
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [rows] = await sql<{ n: number }[]>`select count(*)::int as n from usage_events where token_id = ${id}`;
      const [token] = await sql<{ used: number }[]>`select used from tokens where id = ${id}`;
      expect(rows?.n).toBe(mock.requests.length);
      expect(Number(token?.used)).toBe(mock.requests.length);
      if (failures.length === 0) expect(rows?.n).toBe(answered.length);
    } finally {
      await sql.end();
    }
  });

  it("a stream longer than the grace ends with event: error and a TRUNCATED row with the usage seen so far", { timeout: 30_000 }, async () => {
    const graceMs = 2500;
    const r = await spawnRelay(relayEnv({ DATABASE_URL: db.url, RELAYAPI_SHUTDOWN_GRACE_MS: String(graceMs) }), { label: "long", bundle });
    procs.push(r);
    const openaiToken = await issueToken(r.url);
    const anthropicToken = await issueToken(r.url, "anthropic");
    mock.reset();
    const slow = { "content-type": "application/json", "x-mock-chunks": "200", "x-mock-delay-ms": "50" };
    const read = async (path: string, body: string, headers: Record<string, string>) => {
      const res = await request(`${r.url}${path}`, { method: "POST", headers: { ...slow, ...headers }, body });
      let text = "";
      let first: () => void = () => {};
      const started = new Promise<void>((resolve) => (first = resolve));
      const done = (async () => {
        for await (const c of res.body) {
          text += (c as Buffer).toString();
          first();
        }
        return { status: res.statusCode, text, endedAt: Date.now() };
      })();
      return { started, done };
    };
    const openai = await read("/api/openai/v1/chat/completions", chatBody(true), { authorization: `Bearer ${openaiToken.secret}` });
    const anthropic = await read(
      "/api/anthropic/v1/messages",
      JSON.stringify({ model: "claude-mock", max_tokens: 10, stream: true, messages: [{ role: "user", content: "hi" }] }),
      {
        "x-api-key": anthropicToken.secret,
        "anthropic-version": "2023-06-01",
      },
    );
    const both = Promise.all([openai.done, anthropic.done]);
    await Promise.all([openai.started, anthropic.started]);
    const termAt = Date.now();
    r.child.kill("SIGTERM");
    const [o, an] = await both;
    const exit = await r.exited;
    const exitMs = Date.now() - termAt;
    expect(exit.code, r.stderr()).toBe(0);

    for (const s of [o, an]) {
      expect(s.status).toBe(200);
      expect(s.text).toContain("tok3 ");
      expect(s.text).not.toContain("[DONE]");
      expect(s.text).toMatch(/\n\nevent: error\ndata: \{.*\}\n\n$/);
      expect(s.endedAt - termAt).toBeGreaterThanOrEqual(graceMs - 100);
    }
    expect(JSON.parse(/event: error\ndata: (.*)\n\n$/.exec(o.text)![1]!)).toMatchObject({ error: { message: "relay shutting down" } });
    expect(JSON.parse(/event: error\ndata: (.*)\n\n$/.exec(an.text)![1]!)).toMatchObject({ type: "error", error: { message: "relay shutting down" } });
    expect(exitMs).toBeLessThan(graceMs + 2000);
    for (const req of mock.requests) expect(req.aborted).toBe(true); // the upstream call was cut too

    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ provider: string; outcome: number; status: number; bytes: number; prompt: number; completion: number }[]>`
        select provider, outcome, status, bytes::int, prompt_tokens::int as prompt, completion_tokens::int as completion
        from usage_events where token_id in (${openaiToken.id}, ${anthropicToken.id}) order by provider`;
      const forwarded = (text: string) => Buffer.byteLength(text.slice(0, text.lastIndexOf("event: error")));
      expect(rows).toEqual([
        { provider: "anthropic", outcome: Outcome.TRUNCATED, status: 200, bytes: forwarded(an.text), prompt: 10, completion: 1 },
        { provider: "openai", outcome: Outcome.TRUNCATED, status: 200, bytes: forwarded(o.text), prompt: 0, completion: 0 },
      ]);
    } finally {
      await sql.end();
    }
    console.log(`[drain] long streams cut at ${o.endedAt - termAt} / ${an.endedAt - termAt} ms, exit ${exitMs} ms after SIGTERM (grace ${graceMs})`);
  });

  it("with the database stalled, exits within grace + 2 s and spills the usage; the next start writes it", { timeout: 40_000 }, async () => {
    const graceMs = 2000;
    const proxy = await startPgProxy(new URL(db.url));
    const dataDir = mkdtempSync(join(tmpdir(), "relayapi-drain-spill-"));
    try {
      const env = relayEnv({
        DATABASE_URL: proxy.urlFor(db.url),
        RELAYAPI_DATA_DIR: dataDir,
        RELAYAPI_SHUTDOWN_GRACE_MS: String(graceMs),
        RELAYAPI_LEASE_IDLE_MS: "60000",
      });
      const r = await spawnRelay(env, { label: "stalled", bundle });
      procs.push(r);
      const { secret, id } = await issueToken(r.url);
      const call = async () => {
        const res = await request(`${r.url}/api/openai/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: chatBody(false),
        });
        await res.body.text();
        return res.statusCode;
      };
      // 32 calls in a row lease blocks of 1, 2, 4, 8, 16 and 32 calls: 31 are left in memory.
      for (let i = 0; i < 32; i++) expect(await call()).toBe(200);
      await sleep(600); // written
      mock.reset();
      proxy.stall();
      // Served from the lease while the database swallows every byte; their rows stay queued.
      const during = await Promise.all(Array.from({ length: 12 }, () => call()));
      expect(during).toEqual(Array(12).fill(200));
      await sleep(400); // the writer's batch is now stuck in the stalled connection

      const termAt = Date.now();
      r.child.kill("SIGTERM");
      // Bounded: a relay that never exits is killed (and fails below).
      const exit = await Promise.race([r.exited, sleep(graceMs + 15_000).then(() => r.kill9())]);
      const exitMs = Date.now() - termAt;
      console.log(`[drain] database stalled: exit ${exitMs} ms after SIGTERM (grace ${graceMs} ms)`);
      expect(exit.code, r.stderr()).toBe(0);
      // Within grace + 2 s as the relay measures it; the margin outside is for a loaded machine.
      expect(Number(r.logLine("shut down")?.ms)).toBeLessThan(graceMs + 2000 + 100);
      expect(exitMs).toBeLessThan(graceMs + 2000 + 1000);
      expect(r.logLine("usage records spilled"), r.stderr()).toMatchObject({ count: 12 });

      const spills = readdirSync(dataDir).filter((f) => f.startsWith("usage-spill-"));
      expect(spills).toHaveLength(1);
      const file = join(dataDir, spills[0]!);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const text = readFileSync(file, "utf8");
      for (const s of [secret, UPSTREAM_KEY, ADMIN_KEY, MASTER_KEY]) expect(text).not.toContain(s);
      const lines = text.trimEnd().split("\n");
      expect(lines).toHaveLength(12);
      expect(JSON.parse(lines[0]!)).toMatchObject({ tokenId: id, provider: "openai", status: 200, outcome: Outcome.COMPLETE });
      // A crash while writing leaves a half line; a stray line must not stop the start either.
      appendFileSync(file, 'not json\n{"tokenId":"x","at":');

      proxy.resume();
      const next = await spawnRelay(relayEnv({ DATABASE_URL: db.url, RELAYAPI_DATA_DIR: dataDir }), { label: "next", bundle });
      procs.push(next);
      expect(next.logLine("usage spill replayed"), next.stderr()).toMatchObject({ rows: 12, skipped: 2 });
      expect(existsSync(file)).toBe(false);
      expect((await next.stop()).code).toBe(0);
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        const [rows] = await sql<{ n: number }[]>`select count(*)::int as n from usage_events where token_id = ${id}`;
        expect(rows?.n).toBe(32 + 12);
        expect(mock.requests).toHaveLength(12);
      } finally {
        await sql.end();
      }
    } finally {
      await proxy.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("SIGTERM and idle connections", () => {
  it("answers a request sent on an idle keep-alive connection during the drain; an unused connection does not hold the exit", { timeout: 30_000 }, async () => {
    const graceMs = 10_000;
    const r = await spawnRelay(relayEnv({ RELAYAPI_SHUTDOWN_GRACE_MS: String(graceMs) }), { label: "idle", bundle });
    try {
      const { port } = new URL(r.url);
      const open = async (): Promise<Socket> => {
        const s = connect(Number(port), "127.0.0.1");
        s.on("error", () => {});
        await new Promise((resolve) => s.once("connect", resolve));
        return s;
      };
      // Like undici's spare connections: opened, never used.
      const unused = await open();
      const keptAlive = await open();
      const answer = (s: Socket, req: string) =>
        new Promise<string>((resolve, reject) => {
          if (s.destroyed || s.readableEnded) return reject(new Error("closed before the request"));
          let got = "";
          const onData = (d: Buffer) => {
            got += d.toString();
            const m = /content-length: (\d+)\r\n/i.exec(got);
            const head = got.indexOf("\r\n\r\n");
            if (m && head !== -1 && got.length >= head + 4 + Number(m[1])) {
              s.off("data", onData);
              resolve(got);
            }
          };
          s.on("data", onData);
          s.once("end", () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
          s.once("close", () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
          s.write(req);
        });
      const get = "GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n";
      expect(await answer(keptAlive, get)).toMatch(/^HTTP\/1\.1 200/);
      const unusedClosed = new Promise<number>((resolve) => unused.once("close", () => resolve(Date.now())));
      // An h2c session (prior knowledge), idle between its streams.
      const session = connectH2(r.url);
      session.on("error", () => {});
      const goaway = new Promise<number>((resolve) => session.once("goaway", () => resolve(Date.now())));
      const h2get = (path: string) =>
        new Promise<number>((resolve, reject) => {
          const req = session.request({ ":path": path });
          req.on("response", (h) => {
            req.resume();
            req.on("end", () => resolve(Number(h[":status"])));
          });
          req.on("error", reject);
          req.end();
        });
      expect(await h2get("/healthz")).toBe(200);

      const termAt = Date.now();
      r.child.kill("SIGTERM");
      await sleep(300);
      // Idle since its last answer; the next request must be answered, not reset.
      const second = await answer(keptAlive, get).catch((e: unknown) => String(e));
      const h2during = await h2get("/readyz").catch((e: unknown) => String(e));
      const exit = await Promise.race([r.exited, sleep(graceMs + 5000).then(() => r.kill9())]);
      const exitMs = Date.now() - termAt;
      console.log(`[drain] idle connections: exit ${exitMs} ms after SIGTERM (drain ${DRAIN_MS} ms, grace ${graceMs} ms)`);
      expect(second).toMatch(/^HTTP\/1\.1 200/);
      expect(h2during).toBe(503);
      expect(exit.code).toBe(0);
      expect((await unusedClosed) - termAt).toBeGreaterThanOrEqual(DRAIN_MS - 50);
      // The session is told to go (GOAWAY) when the listener closes, not before.
      expect((await goaway) - termAt).toBeGreaterThanOrEqual(DRAIN_MS - 50);
      expect(exitMs).toBeLessThan(DRAIN_MS + 3000);
      keptAlive.destroy();
      session.destroy();
    } finally {
      await r.kill9();
      r.cleanup();
    }
  });
});

describe("a second signal", () => {
  it("cuts the drain short: open streams end with their error event at once, usage written, exit 0", { timeout: 30_000 }, async () => {
    const r = await spawnRelay(relayEnv({ RELAYAPI_SHUTDOWN_GRACE_MS: "10000" }), { label: "hurry", bundle });
    try {
      const { secret } = await issueToken(r.url);
      const res = await request(`${r.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-mock-chunks": "200", "x-mock-delay-ms": "50" },
        body: chatBody(true),
      });
      let text = "";
      let first: () => void = () => {};
      const started = new Promise<void>((resolve) => (first = resolve));
      const ended = (async () => {
        for await (const c of res.body) {
          text += (c as Buffer).toString();
          first();
        }
        return Date.now();
      })();
      await started;
      const termAt = Date.now();
      r.child.kill("SIGTERM");
      await sleep(300);
      r.child.kill("SIGINT");
      const endedAt = await ended;
      const exit = await Promise.race([r.exited, sleep(15_000).then(() => r.kill9())]);
      const exitMs = Date.now() - termAt;
      console.log(`[drain] second signal: stream ended ${endedAt - termAt} ms, exit ${exitMs} ms after the first (grace 10000 ms)`);
      expect(exit.code, r.stderr()).toBe(0);
      expect(text).toMatch(/\n\nevent: error\ndata: \{.*relay shutting down.*\}\n\n$/);
      expect(endedAt - termAt).toBeLessThan(1500);
      expect(exitMs).toBeLessThan(300 + 2000 + 1000);
      expect(r.logLine("shutting down now")).toMatchObject({ signal: "SIGINT" });
      expect(r.logLine("shut down")).toMatchObject({ usageDropped: 0, usageSpilled: 0 });
    } finally {
      await r.kill9();
      r.cleanup();
    }
  });
});
