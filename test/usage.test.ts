/**
 * Usage accounting and the audit log (issue 4): a usage row per relayed call with its outcome and
 * provider-reported usage, GetUsage aggregates, WatchUsage live events, ListAuditEvents, no
 * secret in any of them, and no counted call lost when the server stops mid-stream. The query
 * layer runs on PGlite and, when it answers, on PostgreSQL.
 */
import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { eq, inArray } from "drizzle-orm";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApiShape,
  AuthStyle,
  GetUsageResponseSchema,
  ListAuditEventsResponseSchema,
  UsageGroup,
  WatchUsageResponseSchema,
  type GetUsageRequestSchema,
  type UsageRow,
} from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { AuditLog } from "../src/audit/audit-log.js";
import { openDatabase, type Database } from "../src/db/client.js";
import { findTokenById, insertToken } from "../src/db/queries/tokens.js";
import { aggregateUsage, insertUsageBatch, type UsageInsert } from "../src/db/queries/usage.js";
import { auditEvents, keyPools, upstreamKeys, usageEvents } from "../src/db/schema/index.js";
import { useMigratedDatabase } from "./support/databases.js";
import { MOCK_PROMPT_TOKENS, startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { codeOf } from "./support/connect-code.js";
import { availableDrivers, useRelay } from "./support/use-relay.js";
import { sleep, waitFor } from "./support/wait.js";
import { usageCall } from "./support/usage-call.js";

const drivers = await availableDrivers();
const CHUNKS = 5;
const MOCK_USAGE = { promptTokens: MOCK_PROMPT_TOKENS, completionTokens: CHUNKS, totalTokens: MOCK_PROMPT_TOKENS + CHUNKS };
const uniq = (p: string) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
interface CallOptions {
  provider?: string;
  model?: string;
  stream?: boolean;
  headers?: Record<string, string>;
}

/** One relayed call through the HTTP layer, in the provider's own shape; resolves with status and body. */
async function relayCall(url: string, secret: string, o: CallOptions = {}): Promise<{ status: number; body: string }> {
  const provider = o.provider ?? "openai";
  const headers = { authorization: `Bearer ${secret}`, "content-type": "application/json", ...o.headers };
  const messages = [{ role: "user", content: "hi" }];
  let path: string;
  let body: unknown;
  if (provider === "anthropic") {
    path = "/v1/messages";
    body = { model: o.model ?? "claude-mock", max_tokens: 16, messages, stream: o.stream ?? false };
  } else if (provider === "gemini") {
    path = `/v1beta/models/${o.model ?? "gemini-mock"}:${o.stream ? "streamGenerateContent?alt=sse" : "generateContent"}`;
    body = { contents: [{ role: "user", parts: [{ text: "hi" }] }] };
  } else {
    path = "/v1/chat/completions";
    body = { model: o.model ?? "gpt-mock", messages, ...(o.stream ? { stream: true, stream_options: { include_usage: true } } : {}) };
  }
  const res = await fetch(`${url}/api/${provider}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.text() };
}

describe("usage records, GetUsage, WatchUsage and the audit log (relay on PGlite)", () => {
  const { relay } = useRelay({ mock: { chunks: CHUNKS } });
  const secrets: string[] = [];
  /** Every rpc response that must be secret-free, as JSON. */
  const responses: string[] = [];
  const started = new Date(Date.now() - 1000);

  beforeAll(async () => {
    await relay.admin.upsertProvider({
      provider: { id: "deadend", baseUrl: "http://127.0.0.1:1", authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI },
    });
  });

  const issue = async (o: Parameters<TestRelay["issue"]>[0] = {}) => {
    const t = await relay.issue(o);
    secrets.push(t.secret);
    return t;
  };
  const rowsOf = async (tokenId: string) => {
    await relay.app.usage.flush();
    return relay.app.database.db.select().from(usageEvents).where(eq(usageEvents.tokenId, tokenId)).orderBy(usageEvents.id);
  };

  it("records each relayed call with its outcome and the provider's usage, streaming or not", async () => {
    const cases: { provider: string; stream: boolean; model: string }[] = [
      { provider: "openai", stream: false, model: "gpt-mock" },
      { provider: "openai", stream: true, model: "gpt-mock" },
      { provider: "anthropic", stream: true, model: "claude-mock" },
      { provider: "anthropic", stream: false, model: "claude-mock" },
      { provider: "gemini", stream: false, model: "gemini-mock" },
      { provider: "gemini", stream: true, model: "gemini-mock" },
    ];
    // Tokens pin their models: the engine reads a request's model for the policy check only.
    for (const c of cases) {
      const subject = uniq("user");
      const { secret, id } = await issue({ provider: c.provider, subject, limits: { models: [c.model] } });
      const res = await relayCall(relay.url, secret, c);
      expect(res.status, `${c.provider} stream=${c.stream}`).toBe(200);
      const rows = await rowsOf(id);
      expect(rows, `${c.provider} stream=${c.stream}`).toHaveLength(1);
      expect(rows[0], `${c.provider} stream=${c.stream}`).toMatchObject({
        tokenId: id,
        subject,
        provider: c.provider,
        model: c.model,
        keyId: "",
        status: 200,
        outcome: Outcome.COMPLETE,
        ...MOCK_USAGE,
      });
      expect(rows[0]!.bytes).toBe(Buffer.byteLength(res.body));
      expect(rows[0]!.latencyMs).toBeGreaterThanOrEqual(0);
      expect(rows[0]!.at.getTime()).toBeGreaterThan(started.getTime());
      // The metered LLM tokens reach the token's counter.
      expect((await relay.tokens.getToken({ id })).token?.tokensUsed).toBe(BigInt(MOCK_USAGE.totalTokens));
    }
  });

  it("records an upstream error as UPSTREAM_ERROR and an unreachable upstream as REFUNDED", async () => {
    const failing = await issue();
    expect((await relayCall(relay.url, failing.secret, { headers: { "x-mock-status": "500" } })).status).toBe(500);
    expect(await rowsOf(failing.id)).toMatchObject([{ status: 500, outcome: Outcome.UPSTREAM_ERROR, totalTokens: 0 }]);

    const dead = await issue({ provider: "deadend", limits: { maxCalls: 5n } });
    expect((await relayCall(relay.url, dead.secret, { provider: "deadend" })).status).toBe(502);
    expect(await rowsOf(dead.id)).toMatchObject([{ provider: "deadend", status: 502, outcome: Outcome.REFUNDED }]);
    expect((await relay.tokens.getToken({ id: dead.id })).token?.callsUsed).toBe(0n);
  });

  it("GetUsage aggregates by token, subject, provider and model, per time bucket", async () => {
    const [m1, m2, m3] = [uniq("model-a"), uniq("model-b"), uniq("model-c")];
    const alice = await issue({ subject: uniq("alice"), limits: { models: [m1] } });
    const bob = await issue({ subject: uniq("bob"), limits: { models: [m2] } });
    const carol = await issue({ provider: "deadend", subject: uniq("carol"), limits: { models: [m3] } });
    for (let i = 0; i < 3; i++) await relayCall(relay.url, alice.secret, { model: m1 });
    await relayCall(relay.url, bob.secret, { model: m2, stream: true });
    await relayCall(relay.url, bob.secret, { model: m2, headers: { "x-mock-status": "503" } });
    await relayCall(relay.url, carol.secret, { provider: "deadend", model: m3 });
    await relay.app.usage.flush();

    const range = { start: timestampFromDate(started), end: timestampFromDate(new Date(Date.now() + 1000)) };
    const get = async (req: MessageInitShape<typeof GetUsageRequestSchema>): Promise<UsageRow[]> => {
      const res = await relay.admin.getUsage({ ...range, ...req });
      responses.push(toJsonString(GetUsageResponseSchema, res));
      return res.rows;
    };
    const totals = (rows: UsageRow[], key: string) => {
      const mine = rows.filter((r) => r.key === key);
      const sum = (f: (r: UsageRow) => bigint) => mine.reduce((a, r) => a + f(r), 0n);
      return {
        calls: sum((r) => r.calls),
        errors: sum((r) => r.errors),
        prompt: sum((r) => r.usage?.promptTokens ?? 0n),
        completion: sum((r) => r.usage?.completionTokens ?? 0n),
        total: sum((r) => r.usage?.totalTokens ?? 0n),
      };
    };
    const p = BigInt(MOCK_PROMPT_TOKENS);
    const c = BigInt(CHUNKS);
    const aliceTotals = { calls: 3n, errors: 0n, prompt: 3n * p, completion: 3n * c, total: 3n * (p + c) };
    const bobTotals = { calls: 2n, errors: 1n, prompt: p, completion: c, total: p + c };
    const carolTotals = { calls: 0n, errors: 0n, prompt: 0n, completion: 0n, total: 0n };

    const byToken = await get({ groupBy: UsageGroup.TOKEN });
    expect(totals(byToken, alice.id)).toEqual(aliceTotals);
    expect(totals(byToken, bob.id)).toEqual(bobTotals);
    expect(totals(byToken, carol.id)).toEqual(carolTotals);
    for (const r of byToken) expect(r.bucketStart).toEqual(range.start); // bucket_seconds 0: one bucket

    const bySubject = await get({ groupBy: UsageGroup.SUBJECT });
    const subjectOf = async (id: string) => (await relay.tokens.getToken({ id })).token!.subject;
    expect(totals(bySubject, await subjectOf(alice.id))).toEqual(aliceTotals);
    expect(totals(bySubject, await subjectOf(bob.id))).toEqual(bobTotals);

    const byModel = await get({ groupBy: UsageGroup.MODEL });
    expect(totals(byModel, m1)).toEqual(aliceTotals);
    expect(totals(byModel, m2)).toEqual(bobTotals);
    expect(totals(byModel, m3)).toEqual(carolTotals);

    // By provider, against the stored rows counted independently.
    const stored = await relay.app.database.db.select().from(usageEvents);
    const byProvider = await get({ groupBy: UsageGroup.PROVIDER });
    for (const provider of ["openai", "anthropic", "gemini", "deadend"]) {
      const rows = stored.filter((r) => r.provider === provider);
      expect(totals(byProvider, provider), provider).toMatchObject({
        calls: BigInt(rows.filter((r) => r.outcome !== Outcome.REFUNDED).length),
        errors: BigInt(rows.filter((r) => r.outcome === Outcome.UPSTREAM_ERROR || r.outcome === Outcome.TRUNCATED).length),
        total: BigInt(rows.reduce((a, r) => a + r.totalTokens, 0)),
      });
    }

    // Minute buckets: aligned to the minute, and they add up to the same totals.
    const perMinute = await get({ groupBy: UsageGroup.TOKEN, bucketSeconds: 60 });
    for (const r of perMinute) expect(Number(r.bucketStart!.seconds) % 60).toBe(0);
    expect(totals(perMinute, alice.id)).toEqual(aliceTotals);
    const all = await get({ bucketSeconds: 60 });
    expect(all.every((r) => r.key === "")).toBe(true);
    expect(all.reduce((a, r) => a + r.calls, 0n)).toBe(BigInt(stored.filter((r) => r.outcome !== Outcome.REFUNDED).length));

    expect(await codeOf(() => relay.admin.getUsage({ start: range.end, end: range.start }))).toBe(Code.InvalidArgument);
    expect(await codeOf(() => relay.admin.getUsage({ ...range, bucketSeconds: -1 }))).toBe(Code.InvalidArgument);
    const year = { start: timestampFromDate(new Date(Date.now() - 366 * 86_400_000)), end: range.end };
    expect(await codeOf(() => relay.admin.getUsage({ ...year, bucketSeconds: 1 }))).toBe(Code.InvalidArgument);
  });

  it("WatchUsage delivers a relayed call within 1 s, filtered by provider, and ends when the client leaves", async () => {
    const openai = await issue({ limits: { models: ["gpt-mock"] } });
    const gemini = await issue({ provider: "gemini" });
    const ac = new AbortController();
    const events = relay.admin.watchUsage({ provider: "openai" }, { signal: ac.signal })[Symbol.asyncIterator]();
    const first = events.next();
    await waitFor(() => relay.app.usage.watchers > 0, 5000, "the watcher to subscribe");

    await relayCall(relay.url, gemini.secret, { provider: "gemini" }); // filtered out
    const t0 = performance.now();
    await relayCall(relay.url, openai.secret, { stream: true });
    const got = await Promise.race([first, sleep(1000).then(() => undefined)]);
    const elapsed = performance.now() - t0;
    expect(got, "no event within 1 s").toBeDefined();
    expect(elapsed).toBeLessThan(1000);
    const event = got!.value!.event!;
    responses.push(toJsonString(WatchUsageResponseSchema, got!.value!));
    expect(event).toMatchObject({ tokenId: openai.id, provider: "openai", model: "gpt-mock", status: 200, outcome: Outcome.COMPLETE });
    expect(event.usage).toMatchObject({ promptTokens: BigInt(MOCK_PROMPT_TOKENS), completionTokens: BigInt(CHUNKS) });
    expect(event.at).toBeDefined();

    ac.abort();
    await events.next().catch(() => undefined);
    await waitFor(() => relay.app.usage.watchers === 0, 5000, "the server to drop the watcher");
  });

  it("ListAuditEvents shows every admin action, newest first, in stable pages", async () => {
    const { id } = await issue();
    await relay.tokens.revokeToken({ id });
    await relay.admin.upsertProvider({ provider: { id: "audited", baseUrl: "http://127.0.0.1:9", shape: ApiShape.OPENAI } });
    await relay.admin.deleteProvider({ id: "audited" });
    const issuer = uniq("iss");
    const created = await relay.admin.createIssuer({ name: issuer });
    secrets.push(created.secret);
    const rotated = await relay.admin.rotateIssuer({ name: issuer });
    secrets.push(rotated.secret);
    await relay.admin.disableIssuer({ name: issuer, kid: created.kid });

    const page = await relay.admin.listAuditEvents({ pageSize: 500 });
    responses.push(toJsonString(ListAuditEventsResponseSchema, page));
    const actions = page.events.map((e) => [e.actor, e.action, e.target]);
    expect(actions.slice(0, 7)).toEqual([
      ["admin", "DisableIssuer", issuer],
      ["admin", "RotateIssuer", issuer],
      ["admin", "CreateIssuer", issuer],
      ["admin", "DeleteProvider", "audited"],
      ["admin", "UpsertProvider", "audited"],
      ["admin", "RevokeToken", id],
      ["admin", "IssueToken", id],
    ]);
    expect(page.events[0]!.detail).toBe(`kid=${created.kid}`);
    expect(page.events.some((e) => e.action === "UpsertProvider" && e.target === "deadend")).toBe(true);
    expect(page.nextPageToken).toBe("");

    const paged: string[] = [];
    let token = "";
    do {
      const p = await relay.admin.listAuditEvents({ pageSize: 3, pageToken: token });
      responses.push(toJsonString(ListAuditEventsResponseSchema, p));
      expect(p.events.length).toBeLessThanOrEqual(3);
      paged.push(...p.events.map((e) => e.id));
      token = p.nextPageToken;
    } while (token);
    expect(paged).toEqual(page.events.map((e) => e.id));
    expect(await codeOf(() => relay.admin.listAuditEvents({ pageToken: "bm90LWFuLWlk" }))).toBe(Code.InvalidArgument);
  });

  it("masks secret-shaped values an audit caller passes by mistake", async () => {
    const [secret] = secrets;
    await relay.app.audit.record({ actor: "admin", action: "Test", target: secret!, detail: `key ${UPSTREAM_KEY} auth Bearer ${secret}` });
    const [event] = (await relay.admin.listAuditEvents({ pageSize: 1 })).events;
    expect(event).toMatchObject({ action: "Test", target: "[redacted]", detail: "key [redacted] auth [redacted]" });
  });

  it("no usage row, audit row or rpc response holds the upstream key or a token secret", async () => {
    expect(secrets.length).toBeGreaterThan(10);
    const db = relay.app.database.db;
    const haystacks = [JSON.stringify(await db.select().from(usageEvents)), JSON.stringify(await db.select().from(auditEvents)), ...responses];
    expect(responses.length).toBeGreaterThan(5);
    for (const text of haystacks) {
      expect(text).not.toContain(UPSTREAM_KEY);
      for (const s of secrets) expect(text).not.toContain(s);
    }
  });
});

describe("shutdown with calls in flight (PGlite)", () => {
  let mock: MockProvider;
  /** Data directories to drop at the end; the second relay reopens the first's (no new migration). */
  const dirs: string[] = [];
  beforeAll(async () => {
    mock = await startMockProvider({ chunks: 5 });
  });
  afterAll(async () => {
    await mock?.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Starts 10 streaming calls, waits until every one was counted and forwarded, stops the
   * server, then reopens the data directory: one usage row per counted call.
   */
  async function stopMidStream(opts: { graceMs?: number; chunks: number; delayMs: number }) {
    // Not relay.close(): it drops the data directory, which this test reopens.
    const relay = await startRelay({
      mock,
      config: { ...(dirs[0] ? { dataDir: dirs[0] } : {}), ...(opts.graceMs === undefined ? {} : { shutdownGraceMs: opts.graceMs }) },
    });
    dirs.push(relay.dataDir, relay.app.config.dataDir);
    let reopened: Database | undefined;
    try {
      const { secret, id } = await relay.issue();
      const watch = new AbortController();
      const watching = (async () => {
        for await (const _ of relay.admin.watchUsage({}, { signal: watch.signal }));
      })().catch(() => {});
      await waitFor(() => relay.app.usage.watchers > 0, 5000, "the watcher");
      const before = mock.requests.length;
      const headers = { "x-mock-chunks": String(opts.chunks), "x-mock-delay-ms": String(opts.delayMs) };
      const calls = Array.from({ length: 10 }, () => relayCall(relay.url, secret, { stream: true, headers }).catch(() => undefined));
      await waitFor(() => mock.requests.length - before >= 10, 5000, "10 forwarded calls");
      const t0 = performance.now();
      await relay.app.close();
      const closeMs = performance.now() - t0;
      await Promise.all(calls);
      watch.abort();
      await watching;

      reopened = await openDatabase({ dataDir: relay.app.config.dataDir });
      const rows = await reopened.db.select().from(usageEvents).where(eq(usageEvents.tokenId, id));
      const token = await findTokenById(reopened.db, id);
      return { rows, used: token?.used, reported: relay.calls.filter((c) => c.tokenId === id).length, closeMs };
    } finally {
      await reopened?.close();
    }
  }

  it("streams that finish within the grace period: every counted call has its row, and a watcher does not hold shutdown up", async () => {
    const r = await stopMidStream({ chunks: 5, delayMs: 100 });
    expect(r.used).toBe(10);
    expect(r.reported).toBe(10);
    expect(r.rows).toHaveLength(10);
    expect(r.rows.every((row) => row.outcome === Outcome.COMPLETE)).toBe(true);
    expect(r.closeMs).toBeLessThan(5000); // the default grace is 10 s: the watch stream ended at once
  });

  it("streams cut at the grace deadline: recorded TRUNCATED, none lost", async () => {
    const r = await stopMidStream({ graceMs: 300, chunks: 100, delayMs: 50 });
    expect(r.used).toBe(10);
    expect(r.rows).toHaveLength(10);
    expect(r.rows.every((row) => row.outcome === Outcome.TRUNCATED)).toBe(true);
  });
});

describe.each(drivers)("usage and audit queries on %s", (driver) => {
  const database = useMigratedDatabase(driver);

  const T0 = new Date("2001-01-01T00:00:00Z");
  const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
  const row = (seconds: number, o: Partial<UsageInsert>): UsageInsert => usageCall("tok_a", { at: at(seconds).getTime(), subject: "sa", model: "m1", ...o });
  const none = { promptTokens: 0, completionTokens: 0, totalTokens: 0 };

  it("writes a batch with its token and key counters in one statement", async () => {
    const { db } = database;
    const expiresAt = new Date(Date.now() + 3_600_000);
    await insertToken(db, { id: "tok_a", kind: 1, secretHash: "h-a", provider: "openai", expiresAt });
    await insertToken(db, { id: "tok_b", kind: 1, secretHash: "h-b", provider: "anthropic", expiresAt });
    await db.insert(keyPools).values({ name: "p1", provider: "openai", strategy: 1 });
    await db.insert(upstreamKeys).values({ id: "key_1", pool: "p1", keyEnc: "x", keyHash: "h1", masked: "sk-...0001" });
    await insertUsageBatch(db, [
      row(0, { keyId: "key_1" }),
      row(59.999, { keyId: "key_1" }),
      row(60, { keyId: "key_1", status: 500, outcome: Outcome.UPSTREAM_ERROR, ...none }),
      row(61, {
        tokenId: "tok_b",
        subject: "sb",
        provider: "anthropic",
        model: "m2",
        outcome: Outcome.TRUNCATED,
        promptTokens: 7,
        completionTokens: 3,
        totalTokens: 10,
      }),
      row(120, { tokenId: "tok_b", subject: "sb", provider: "anthropic", model: "m2", keyId: "key_1", status: 502, outcome: Outcome.REFUNDED, ...none }),
      row(3600, { tokenId: "tok_b", subject: "sb", provider: "anthropic", model: "m2" }), // at the range's end: outside
      row(5, { tokenId: "tok_unknown" }), // a token row that is gone: its record is kept all the same
    ]);
    expect(await db.select({ id: usageEvents.id }).from(usageEvents)).toHaveLength(7);
    expect((await findTokenById(db, "tok_a"))?.tokensUsed).toBe(30);
    expect((await findTokenById(db, "tok_b"))?.tokensUsed).toBe(25);
    const [key] = await db
      .select()
      .from(upstreamKeys)
      .where(inArray(upstreamKeys.id, ["key_1"]));
    expect(key).toMatchObject({ calls: 3, lastUsedAt: at(60) }); // the refunded call did not use the key
    await insertUsageBatch(db, []);
  });

  it("aggregates by bucket and dimension over [start, end), refunds excluded from calls (and from unpriced calls)", async () => {
    const { db } = database;
    const range = { start: T0, end: at(3600), limit: 100 };
    expect(await aggregateUsage(db, { ...range, groupBy: "token", bucketSeconds: 60 })).toEqual([
      { bucketStart: at(0), key: "tok_a", calls: 2, promptTokens: 20, completionTokens: 10, totalTokens: 30, errors: 0, costMicroUsd: 0, unpricedCalls: 2 },
      {
        bucketStart: at(0),
        key: "tok_unknown",
        calls: 1,
        promptTokens: 10,
        completionTokens: 5,
        totalTokens: 15,
        errors: 0,
        costMicroUsd: 0,
        unpricedCalls: 1,
      },
      { bucketStart: at(60), key: "tok_a", calls: 1, promptTokens: 0, completionTokens: 0, totalTokens: 0, errors: 1, costMicroUsd: 0, unpricedCalls: 1 },
      { bucketStart: at(60), key: "tok_b", calls: 1, promptTokens: 7, completionTokens: 3, totalTokens: 10, errors: 1, costMicroUsd: 0, unpricedCalls: 1 },
      { bucketStart: at(120), key: "tok_b", calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, errors: 0, costMicroUsd: 0, unpricedCalls: 0 },
    ]);
    expect(await aggregateUsage(db, { ...range, bucketSeconds: 0 })).toEqual([
      { bucketStart: T0, key: "", calls: 5, promptTokens: 37, completionTokens: 18, totalTokens: 55, errors: 2, costMicroUsd: 0, unpricedCalls: 5 },
    ]);
    expect(await aggregateUsage(db, { ...range, groupBy: "provider", bucketSeconds: 0 })).toEqual([
      { bucketStart: T0, key: "anthropic", calls: 1, promptTokens: 7, completionTokens: 3, totalTokens: 10, errors: 1, costMicroUsd: 0, unpricedCalls: 1 },
      { bucketStart: T0, key: "openai", calls: 4, promptTokens: 30, completionTokens: 15, totalTokens: 45, errors: 1, costMicroUsd: 0, unpricedCalls: 4 },
    ]);
    const bySubject = await aggregateUsage(db, { ...range, groupBy: "subject", bucketSeconds: 3600 });
    expect(bySubject.map((r) => [r.bucketStart, r.key, r.calls])).toEqual([
      [T0, "sa", 4],
      [T0, "sb", 1],
    ]);
    const byModel = await aggregateUsage(db, { ...range, groupBy: "model", bucketSeconds: 0 });
    expect(byModel.map((r) => [r.key, r.calls, r.totalTokens])).toEqual([
      ["m1", 4, 45],
      ["m2", 1, 10],
    ]);
    expect(await aggregateUsage(db, { start: at(4000), end: at(5000), bucketSeconds: 60, limit: 100 })).toEqual([]);
    expect(await aggregateUsage(db, { ...range, groupBy: "token", bucketSeconds: 60, limit: 2 })).toHaveLength(2);
  });

  it("the audit log pages newest first and masks secrets", async () => {
    const audit = new AuditLog(database.db);
    for (let i = 0; i < 5; i++) await audit.record({ actor: "admin", action: `Action${i}`, target: `t${i}` });
    await audit.record({ actor: "system", action: "key.disabled", target: "key_1", detail: "token rai_0123456789abcdefghijABCDEFGHIJ012345 seen" });
    const first = await audit.list(4);
    expect(first.events.map((e) => e.action)).toEqual(["key.disabled", "Action4", "Action3", "Action2"]);
    expect(first.events[0]).toMatchObject({ actor: "system", target: "key_1", detail: "token [redacted] seen" });
    const second = await audit.list(4, first.nextPageToken);
    expect(second.events.map((e) => e.action)).toEqual(["Action1", "Action0"]);
    expect(second.nextPageToken).toBe("");
    expect((await audit.list(0)).events).toHaveLength(6);
  });
});
