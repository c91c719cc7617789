/**
 * Probes of the exactness promises (DESIGN 3.3, 10, 10a): calls never past a cap, refunds only
 * when no byte left, metered budgets past their limit by at most one call's maximum (README
 * "How exact", src/tokens/budget-reservations.ts).
 *
 * The budget probes use a mock provider that behaves as a real one does where it matters here:
 * it generates `n` choices, each as long as the output cap the request names (`max_tokens`,
 * `max_completion_tokens`), or LONG tokens when it names none (a model's own limit: 32k for
 * GPT-4.1, 128k for GPT-5), and reports that usage.
 */
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { eq } from "drizzle-orm";
import postgres from "postgres";
import { Agent } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { findTokenById } from "../src/db/queries/tokens.js";
import { quotaCounters } from "../src/db/schema/index.js";
import { sealToken } from "../src/sdk/index.js";
import { createTestDatabase, postgresAvailable } from "./support/databases.js";
import { chatStatus } from "./support/http.js";
import { startMockProvider, type Behaviour, type MockProvider, type RecordedRequest } from "./support/mock-provider.js";
import type { TestRelay } from "./support/relay.js";
import { createIssuer } from "./support/sealed.js";
import { buildRelayBundle, spawnRelay } from "./support/spawn-relay.js";
import { useCluster, useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

/** What the mock generates per choice when the request names no output cap. */
const LONG = 30_000;
const PROMPT = 10;

/** A provider's answer: `n` choices of the requested cap (else LONG) tokens each, after `delayMs`. */
function generating(delayMs: number): (rec: RecordedRequest) => Behaviour {
  return (rec) => {
    const body = JSON.parse(rec.body.toString("utf8")) as Record<string, unknown>;
    const caps = [body.max_tokens, body.max_completion_tokens].filter((v): v is number => typeof v === "number");
    const perChoice = caps.length > 0 ? Math.min(...caps) : LONG;
    const completion = perChoice * (typeof body.n === "number" ? body.n : 1);
    const answer = {
      id: "chatcmpl-probe",
      object: "chat.completion",
      created: 0,
      model: body.model,
      choices: [{ index: 0, message: { role: "assistant", content: "x" }, finish_reason: "length" }],
      usage: { prompt_tokens: PROMPT, completion_tokens: completion, total_tokens: PROMPT + completion },
    };
    return { stream: { contentType: "application/json", parts: [JSON.stringify(answer)], delayMs } };
  };
}

async function chat(relay: TestRelay, secret: string, body: Record<string, unknown>): Promise<number> {
  const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-probe", messages: [{ role: "user", content: "hi" }], ...body }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** The JSON body bytes of a call, as the relay estimates its input (bytes / 4). */
const inputOf = (body: Record<string, unknown>): number =>
  Math.ceil(Buffer.byteLength(JSON.stringify({ model: "gpt-probe", messages: [{ role: "user", content: "hi" }], ...body })) / 4);

/*
 * All four failed on the tree this probe started from: only an LLM-token budget measured a call's
 * `n` and output cap, a metered call that named no output cap reserved 4,096 tokens but let the
 * provider generate up to the model's own limit, and a metered token's body in UTF-16 went
 * upstream unread. src/relay/token-policy.ts now measures for every metered token, inserts the
 * reserved cap where a metered call names none, and reads every metered token's body.
 */
describe("metered budgets: past the limit by at most one call's maximum", () => {
  const { relay, mock } = useRelay();

  const token = async (id: string) => (await relay.tokens.getToken({ id })).token!;

  it("a dollar budget reserves a call's maximum with its `n` and `max_tokens` (as an LLM-token budget does)", async () => {
    // $1 per million tokens in and out: a micro-dollar per token, so dollars read as tokens.
    await relay.admin.setPrice({ price: { provider: "openai", model: "gpt-probe", input: 1_000_000n, output: 1_000_000n } });
    mock.behave(generating(300));
    const body = { n: 8, max_tokens: 1000 };
    const maximum = 8 * 1000 + inputOf(body);
    const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: 10_000n } });
    // 10 at once: each admitted while the counter is below $0.01.
    const statuses = await Promise.all(Array.from({ length: 10 }, () => chat(relay, secret, body)));
    const spent = Number((await token(id)).microUsdUsed);
    const admitted = statuses.filter((s) => s === 200).length;
    // Each call costs 8,010 micro-dollars; the documented bound is budget + one call's maximum.
    expect({ admitted, spent, within: spent < 10_000 + maximum }).toEqual({ admitted: 2, spent: 2 * (PROMPT + 8000), within: true });
  });

  it("a plan's LLM-token day reserves a call's maximum with its `n` and `max_tokens`", async () => {
    mock.behave(generating(300));
    await relay.admin.createPlan({ plan: { name: "probe-tokens", tokensPerDay: 10_000n } });
    await relay.app.plans.reload();
    const body = { n: 8, max_tokens: 1000 };
    const maximum = 8 * 1000 + inputOf(body);
    const { secret } = await relay.issue({ subject: "probe-user", plan: "probe-tokens" });
    const statuses = await Promise.all(Array.from({ length: 10 }, () => chat(relay, secret, body)));
    const [row] = await relay.app.database.db.select().from(quotaCounters).where(eq(quotaCounters.subject, "probe-user"));
    const spent = row?.llmTokens ?? -1;
    const admitted = statuses.filter((s) => s === 200).length;
    expect({ admitted, spent, within: spent < 10_000 + maximum }).toEqual({ admitted: 2, spent: 2 * (PROMPT + 8000), within: true });
  });

  it("an LLM-token budget and a request with no output cap: the provider is held to the reserved maximum", async () => {
    mock.behave(generating(300));
    const { secret, id } = await relay.issue({ limits: { budgetTokens: 10_000n } });
    const body = {};
    // README: "reserves its maximum (the output-token cap it asks for, or the token's
    // max_output_tokens, else 4096, times n, plus its body bytes / 4)".
    const maximum = 4096 + inputOf(body);
    const statuses = await Promise.all(Array.from({ length: 10 }, () => chat(relay, secret, body)));
    const spent = Number((await token(id)).tokensUsed);
    const admitted = statuses.filter((s) => s === 200).length;
    expect({ spent, within: spent < 10_000 + maximum, admitted: admitted <= 3 }).toEqual({ spent, within: true, admitted: true });
  });

  it("a plan's LLM-token window and a JSON body the relay cannot read (UTF-16): refused, never forwarded unread", async () => {
    await relay.admin.createPlan({ plan: { name: "probe-wide", tokensPerDay: 10_000n } });
    await relay.app.plans.reload();
    // Tools allowed: no other rule of the token makes the relay read the body.
    const { secret } = await relay.issue({ provider: "anthropic", subject: "wide-user", plan: "probe-wide", limits: { toolsAllowed: true } });
    mock.reset();
    const body = Buffer.from(JSON.stringify({ model: "claude-probe", max_tokens: 100_000, messages: [{ role: "user", content: "hi" }] }), "utf16le");
    const res = await fetch(`${relay.url}/api/anthropic/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body,
    });
    await res.arrayBuffer();
    // With an LLM-token budget of its own the token gets 415 here; read as "not JSON", this call's maximum is 0.
    expect({ status: res.status, forwarded: mock.requests.length }).toEqual({ status: 415, forwarded: 0 });
  });
});

const hasPostgres = await postgresAvailable();
const agent = new Agent({ connections: 128 });
afterAll(() => agent.close());

const call = (url: string, secret: string): Promise<number> => chatStatus(url, secret, agent);

const chats = (mock: MockProvider) => mock.requests.filter((r) => r.path.endsWith("/chat/completions")).length;

describe.skipIf(!hasPostgres)("a cap hammered through two instances on one PostgreSQL", () => {
  const { a, b, mock } = useCluster({ config: { leaseIdleMs: 100 } });

  it("bursts that outlast the idle return on both instances: exactly the cap forwarded, the count ends exact", async () => {
    const { secret, id } = await a.issue({ limits: { maxCalls: 120n } });
    mock.reset();
    const statuses: number[] = [];
    for (let burst = 0; burst < 8; burst++) {
      statuses.push(...(await Promise.all(Array.from({ length: 40 }, (_, i) => call((i % 2 ? a : b).url, secret)))));
      await sleep(150); // longer than the idle time: leases go back between bursts
    }
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(statuses.filter((s) => s === 200)).toHaveLength(120);
    expect(chats(mock)).toBe(120);
    expect((await findTokenById(a.app.database.db, id))!.used).toBe(120);
  });

  it("a token revoked on one instance mid-hammer: nothing forwarded past the cap, nothing started a second later", async () => {
    const { secret, id } = await a.issue({ limits: { maxCalls: 100_000n } });
    mock.reset();
    let revokedAt = Infinity;
    const late: number[] = [];
    const served: number[] = [];
    const stop = Date.now() + 2500;
    const worker = async (url: string): Promise<void> => {
      while (Date.now() < stop) {
        const started = Date.now();
        const status = await call(url, secret);
        if (status === 200) served.push(started);
        if (status === 200 && started > revokedAt + 1000) late.push(started - revokedAt);
        expect([200, 401]).toContain(status);
      }
    };
    const workers = Array.from({ length: 16 }, (_, i) => worker(i % 2 ? a.url : b.url));
    await sleep(800);
    await a.tokens.revokeToken({ id });
    revokedAt = Date.now();
    await Promise.all(workers);
    expect(late).toEqual([]);
    expect(served.length).toBeGreaterThan(0);
    // Every forwarded call was counted (leases dropped at revocation waste calls, never add any).
    expect(chats(mock)).toBe(served.length);
    expect((await findTokenById(a.app.database.db, id))!.used).toBeGreaterThanOrEqual(served.length);
  });

  it("a subject's two tokens on two instances while its plan's day limit is lowered: the new limit holds a second later", async () => {
    await a.admin.createPlan({ plan: { name: "probe-lower", callsPerDay: 1000n } });
    await Promise.all([a.app.plans.reload(), b.app.plans.reload()]);
    const t1 = await a.issue({ subject: "lowered", plan: "probe-lower" });
    const t2 = await a.issue({ subject: "lowered", plan: "probe-lower" });
    mock.reset();
    // Warm leases on both instances, for both tokens.
    for (let r = 0; r < 3; r++) await Promise.all(Array.from({ length: 40 }, (_, i) => call((i % 2 ? a : b).url, i % 4 < 2 ? t1.secret : t2.secret)));
    const before = chats(mock);
    await a.admin.updatePlan({ plan: { name: "probe-lower", callsPerDay: BigInt(before + 10) } });
    await sleep(1200);
    const statuses = await Promise.all(Array.from({ length: 100 }, (_, i) => call((i % 2 ? a : b).url, i % 4 < 2 ? t1.secret : t2.secret)));
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(chats(mock)).toBeLessThanOrEqual(before + 10);
  });
});

describe.skipIf(!hasPostgres)("an instance killed (SIGKILL) while it holds a lease", () => {
  it("forwards at most the cap across the dead and the living instance; the count stays <= cap", { timeout: 60_000 }, async () => {
    const mock = await startMockProvider();
    const db = await createTestDatabase();
    const env = {
      DATABASE_URL: db.url,
      RELAYAPI_ADMIN_KEY: "rak_" + randomBytes(16).toString("hex"),
      RELAYAPI_MASTER_KEY: randomBytes(32).toString("base64url"),
      RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url,
      RELAYAPI_IP_RPM: "0",
    };
    const bundle = await buildRelayBundle();
    const [killed, living] = await Promise.all([spawnRelay(env, { label: "killed", bundle }), spawnRelay(env, { label: "living", bundle })]);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const admin = createClient(TokenService, createConnectTransport({ baseUrl: living.url, httpVersion: "1.1" }));
      const auth = { headers: { authorization: `Bearer ${env.RELAYAPI_ADMIN_KEY}` } };
      const issued = await admin.issueToken(
        { provider: "openai", credential: { case: "upstreamKey", value: "sk-probe-kill-0123456789" }, limits: { maxCalls: 400n } },
        auth,
      );
      const secret = issued.secret;
      const used = async (): Promise<number> => Number((await sql`select used from tokens where id = ${issued.token!.id}`)[0]!.used);
      // Bursts on the doomed instance grow its lease (blocks double while used up within a second).
      for (let r = 0; r < 3; r++) await Promise.all(Array.from({ length: 50 }, () => call(killed.url, secret)));
      const inFlight = Promise.all(Array.from({ length: 50 }, () => call(killed.url, secret).catch(() => 0)));
      await sleep(5);
      await killed.kill9();
      await inFlight;
      const afterKill = await used();
      const forwardedBeforeKill = chats(mock);
      expect(afterKill).toBeLessThanOrEqual(400);
      expect(afterKill).toBeGreaterThanOrEqual(forwardedBeforeKill);
      const wasted = afterKill - forwardedBeforeKill;
      // The living instance serves what is left, never more.
      for (let r = 0; r < 6; r++) {
        const statuses = await Promise.all(Array.from({ length: 100 }, () => call(living.url, secret)));
        expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
      }
      expect(chats(mock)).toBeLessThanOrEqual(400);
      expect(await used()).toBeLessThanOrEqual(400);
      // The calls the killed instance had leased and not used are lost, and only those: at most its last block.
      expect(wasted).toBeLessThanOrEqual(50);
      expect(chats(mock)).toBe(400 - wasted);
    } finally {
      await sql.end({ timeout: 1 });
      await killed.kill9();
      await living.stop();
      killed.cleanup();
      living.cleanup();
      await db.drop();
      await mock.close();
    }
  });
});

describe("limits at the edges of the counters", () => {
  const { relay } = useRelay();

  it("refuses a cap or budget of 0, negative, or past 2^53 at issue; a cap of 2^53-1 counts", async () => {
    for (const limits of [
      { maxCalls: 0n },
      { maxCalls: -1n },
      { maxCalls: 2n ** 53n },
      { maxCalls: 2n ** 63n - 1n },
      { budgetTokens: 0n },
      { budgetMicroUsd: -5n },
    ]) {
      await expect(
        relay.issue({ limits }),
        JSON.stringify(limits, (_, v) => (typeof v === "bigint" ? String(v) : v)),
      ).rejects.toThrow();
    }
    const { secret, id } = await relay.issue({ limits: { maxCalls: BigInt(Number.MAX_SAFE_INTEGER), budgetTokens: BigInt(Number.MAX_SAFE_INTEGER) } });
    for (let i = 0; i < 5; i++) expect(await call(relay.url, secret)).toBe(200);
    const row = await findTokenById(relay.app.database.db, id);
    expect(row!.used).toBeGreaterThanOrEqual(5);
    expect(row!.maxCalls).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("refuses plan limits of 0 or negative", async () => {
    await expect(relay.admin.createPlan({ plan: { name: "zero", callsPerDay: 0n } })).rejects.toThrow();
    await expect(relay.admin.createPlan({ plan: { name: "neg", tokensPerDay: -1n } })).rejects.toThrow();
    await expect(relay.admin.createPlan({ plan: { name: "huge", callsPerDay: 2n ** 63n - 1n } })).rejects.toThrow();
  });
});

describe("a sealed token's own cap", () => {
  const { relay, mock } = useRelay();

  it("is never passed, even when its jti was first used by a token with a larger cap", async () => {
    const issuer = await createIssuer(relay, "probe-jti");
    const wide = await sealToken({ jti: "reused", prv: "openai", key: "sk-probe-sealed-0123456789", max: 5 }, issuer.issuerKey);
    const narrow = await sealToken({ jti: "reused", prv: "openai", key: "sk-probe-sealed-0123456789", max: 2 }, issuer.issuerKey);
    for (let i = 0; i < 2; i++) expect(await call(relay.url, wide)).toBe(200);
    mock.reset();
    // The row says 2 of 5 used; the narrow token allows 2 calls in all: none is left for it.
    expect(await call(relay.url, narrow)).toBe(429);
    expect(chats(mock)).toBe(0);
    expect(await call(relay.url, wide)).toBe(200);

    // The same from a lease: calls leased for a hot token with a large cap serve no token with a smaller one.
    const hot = await sealToken({ jti: "hot", prv: "openai", key: "sk-probe-sealed-0123456789", max: 1000 }, issuer.issuerKey);
    const small = await sealToken({ jti: "hot", prv: "openai", key: "sk-probe-sealed-0123456789", max: 10 }, issuer.issuerKey);
    for (let i = 0; i < 40; i++) expect(await call(relay.url, hot)).toBe(200);
    mock.reset();
    expect(await call(relay.url, small)).toBe(429);
    expect(chats(mock)).toBe(0);
    expect(await call(relay.url, hot)).toBe(200);
  });
});

describe("a token that expires while a call's body is still arriving", () => {
  const { relay, mock } = useRelay({ config: { leaseIdleMs: 10_000 } });

  it("is refused at the count, from a lease as from the database", async () => {
    const res = await relay.tokens.issueToken({
      provider: "openai",
      credential: { case: "upstreamKey", value: "sk-probe-expiry-0123456789" },
      expiry: { case: "expiresIn", value: { seconds: 3n } },
    });
    const secret = res.secret;
    const expiresAt = Number(res.token!.expiresAt!.seconds) * 1000 + Math.floor(res.token!.expiresAt!.nanos / 1e6);
    // Calls in bursts until shortly before the expiry: the instance holds a lease with calls left.
    while (Date.now() < expiresAt - 600) await Promise.all(Array.from({ length: 8 }, () => call(relay.url, secret)));
    mock.reset();
    // Authenticated before the expiry, its body complete only after it: the count comes after.
    const status = await new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
      const req = httpRequest(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "content-length": String(body.length) },
      });
      req.on("response", (r) => {
        r.resume();
        r.on("end", () => resolve(r.statusCode ?? 0));
      });
      req.on("error", reject);
      req.write(body.slice(0, 10));
      setTimeout(() => req.end(body.slice(10)), Math.max(0, expiresAt - Date.now()) + 300);
    });
    expect({ status, forwarded: chats(mock) }).toEqual({ status: 401, forwarded: 0 });
  });
});
