/**
 * Plan quotas per subject (issue 24): exact calls per calendar window across a subject's tokens,
 * instances and databases; the 429 of a spent window (Retry-After at the window's end in the
 * quota time zone, OpenAI's x-ratelimit headers); a window that rolls over (a test clock);
 * metered LLM-token windows; a plan's model list; GetQuota and GET /api/quota.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { and, eq } from "drizzle-orm";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { quotaCounters } from "../src/db/schema/index.js";
import { QuotaClock } from "../src/plans/quota-windows.js";
import type { TestRelay } from "./support/relay.js";
import { useCluster, useRelay } from "./support/use-relay.js";
import { createIssuer } from "./support/sealed.js";
import { sealToken, sealTokenForRelay } from "../src/sdk/seal-token.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { postgresAvailable } from "./support/databases.js";

const TZ = "Asia/Tokyo";
const hasPostgres = await postgresAvailable();

function chat(relay: TestRelay, secret: string, model = "gpt-4o-mini"): Promise<Response> {
  return fetch(`${relay.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
}

async function createPlan(relays: TestRelay[], plan: Record<string, unknown> & { name: string }): Promise<void> {
  await relays[0]!.admin.createPlan({ plan });
  // Every instance reads it within a second; the test does not wait for the poll.
  await Promise.all(relays.map((r) => r.app.plans.reload()));
}

/** 200 concurrent calls over 4 tokens of one subject (each with a cap of 100) and the given instances: exactly 20 pass. */
async function exactUnderConcurrency(relays: TestRelay[], mock: { requests: { headers: Record<string, unknown> }[] }): Promise<void> {
  await createPlan(relays, { name: "daily20", callsPerDay: 20n });
  const tokens = await Promise.all([0, 1, 2, 3].map(() => relays[0]!.issue({ subject: "alice", plan: "daily20", limits: { maxCalls: 100n } })));
  const before = mock.requests.length;
  const statuses = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const res = await chat(relays[i % relays.length]!, tokens[i % tokens.length]!.secret);
      await res.arrayBuffer();
      return res.status;
    }),
  );
  expect(statuses.filter((s) => s === 200)).toHaveLength(20);
  expect(statuses.filter((s) => s === 429)).toHaveLength(180);
  expect(mock.requests.length - before).toBe(20);

  // The 21st: a 429 in OpenAI's shape, Retry-After at the next midnight in Tokyo.
  const res = await chat(relays[0]!, tokens[0]!.secret);
  expect(res.status).toBe(429);
  const body = (await res.json()) as { error: { code: string; type: string } };
  expect(body.error.code).toBe("quota_exhausted");
  const midnight = new QuotaClock(TZ).windowsAt(Date.now()).day.endsAt;
  const retryAfter = Number(res.headers.get("retry-after"));
  expect(Math.abs(retryAfter - (midnight - Date.now()) / 1000)).toBeLessThan(5);
  expect(res.headers.get("x-ratelimit-limit-requests")).toBe("20");
  expect(res.headers.get("x-ratelimit-remaining-requests")).toBe("0");
  expect(res.headers.get("x-ratelimit-reset-requests")).toMatch(/^(\d+h)?(\d+m)?\d+s$/);

  // Another subject on the same plan is not affected.
  const bob = await relays[relays.length - 1]!.issue({ subject: "bob", plan: "daily20" });
  const ok = await chat(relays[relays.length - 1]!, bob.secret);
  expect(ok.status).toBe(200);
  await ok.arrayBuffer();

  // The tokens' own counts add up to the plan's: every refused call was given back.
  const used = await Promise.all(tokens.map(async (t) => Number((await relays[0]!.tokens.getToken({ id: t.id })).token!.callsUsed)));
  expect(used.reduce((a, b) => a + b, 0)).toBe(20);

  // The holder's view: GET /api/quota.
  const quota = await fetch(`${relays[0]!.url}/api/quota`, { headers: { authorization: `Bearer ${tokens[1]!.secret}` } });
  expect(quota.status).toBe(200);
  const q = (await quota.json()) as {
    subject: string;
    plan: string;
    timeZone: string;
    windows: { scope: string; period: string; unit: string; limit: string; used?: string; remaining?: string; resetsAt?: string }[];
  };
  expect(q).toMatchObject({ subject: "alice", plan: "daily20", timeZone: TZ });
  const day = q.windows.find((w) => w.scope === "plan" && w.period === "day" && w.unit === "calls");
  expect(day).toMatchObject({ limit: "20", used: "20" });
  expect(day?.remaining ?? "0").toBe("0");
  expect(Date.parse(day!.resetsAt!)).toBe(midnight);
}

describe("plan quotas on one PGlite relay", () => {
  const { relay, mock } = useRelay({ config: { quotaTimeZone: TZ } });
  it("200 concurrent calls of one subject over 4 tokens: exactly 20 reach the provider", async () => {
    await exactUnderConcurrency([relay], mock);
  });
});

describe.skipIf(!hasPostgres)("plan quotas on two instances sharing PostgreSQL", () => {
  const { a, b, mock } = useCluster({ config: { quotaTimeZone: TZ } });
  it("200 concurrent calls of one subject over 4 tokens and 2 instances: exactly 20 reach the provider", async () => {
    await exactUnderConcurrency([a, b], mock);
  });
});

describe("a window that rolls over", () => {
  let now = Date.parse("2026-12-06T23:59:50Z");
  const { relay, mock } = useRelay({ quotaClock: () => now });

  it("a spent day comes back at midnight, and no block leased before midnight serves a call after it", async () => {
    await createPlan([relay], { name: "roll", callsPerDay: 40n, callsPerMonth: 1000n });
    const { secret } = await relay.issue({ subject: "carol", plan: "roll" });
    // Quick calls grow the lease: blocks of several calls, some unused at midnight.
    for (let i = 0; i < 25; i++) expect((await chat(relay, secret)).status).toBe(200);
    const db = relay.app.database.db;
    const counter = async (key: string): Promise<number | undefined> =>
      (
        await db
          .select()
          .from(quotaCounters)
          .where(and(eq(quotaCounters.subject, "carol"), eq(quotaCounters.window, key)))
      )[0]?.calls;
    expect(await counter("2026-12-06")).toBeGreaterThanOrEqual(25);

    now = Date.parse("2026-12-07T00:00:01Z");
    const before = mock.requests.length;
    expect((await chat(relay, secret)).status).toBe(200);
    expect(mock.requests.length - before).toBe(1);
    // The unused calls went back to the day they were leased from: exactly the calls made then.
    for (let i = 0; i < 50 && (await counter("2026-12-06")) !== 25; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await counter("2026-12-06")).toBe(25);
    expect(await counter("2026-12-07")).toBeGreaterThanOrEqual(1);
    // Both days are in December: the month counts all of them, leases included.
    expect(await counter("2026-12")).toBeGreaterThanOrEqual(26);

    // Spend the new day, then cross another midnight.
    let ok = 1;
    for (let i = 0; i < 60; i++) {
      const res = await chat(relay, secret);
      await res.arrayBuffer();
      if (res.status === 200) ok++;
      else expect(res.status).toBe(429);
    }
    expect(ok).toBe(40);
    now = Date.parse("2026-12-08T00:00:00Z");
    expect((await chat(relay, secret)).status).toBe(200);
  });
});

describe("metered windows, model lists, GetQuota", () => {
  const { relay, mock } = useRelay();

  it("an LLM-token day: calls are admitted while under it, the one that crosses it is the last", async () => {
    await createPlan([relay], { name: "tok", tokensPerDay: 50n });
    const { secret } = await relay.issue({ subject: "dave", plan: "tok" });
    const openai = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    let spent = 0;
    let calls = 0;
    for (;;) {
      try {
        const c = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
        spent += c.usage!.total_tokens;
        calls++;
      } catch (e) {
        expect((e as { status?: number }).status).toBe(429);
        expect((e as { code?: string }).code).toBe("quota_exhausted");
        expect((e as { headers?: Headers }).headers?.get("x-ratelimit-limit-tokens")).toBe("50");
        break;
      }
      expect(calls).toBeLessThan(100);
    }
    // Admitted while below 50: the last admitted call is the one that crossed it.
    expect(spent).toBeGreaterThanOrEqual(50);
    expect(spent - spent / calls).toBeLessThan(50);
    const row = (await relay.app.database.db.select().from(quotaCounters).where(eq(quotaCounters.subject, "dave")))[0];
    expect(row?.llmTokens).toBe(spent);
    expect(mock.requests.filter((r) => r.headers.authorization !== undefined).length).toBeGreaterThanOrEqual(calls);
  });

  it("a plan's models narrow the token's: a model outside the plan is refused before anything is counted", async () => {
    await createPlan([relay], { name: "mini", models: ["gpt-4o-mini"] });
    const { secret, id } = await relay.issue({ subject: "erin", plan: "mini" });
    const before = mock.requests.length;
    const refused = await chat(relay, secret, "gpt-4o");
    expect(refused.status).toBe(403);
    expect(mock.requests.length).toBe(before);
    expect((await relay.tokens.getToken({ id })).token!.callsUsed).toBe(0n);
    expect((await chat(relay, secret, "gpt-4o-mini")).status).toBe(200);
    // A token pinned to another model than the plan's: nothing in common, nothing allowed.
    const other = await relay.issue({ subject: "erin", plan: "mini", limits: { models: ["gpt-4o"] } });
    expect((await chat(relay, other.secret, "gpt-4o")).status).toBe(403);
    expect((await chat(relay, other.secret, "gpt-4o-mini")).status).toBe(403);
  });

  it("a sealed token's plan (claim pln) counts against the same subject's window as its issued tokens", async () => {
    await createPlan([relay], { name: "shared3", callsPerDay: 3n });
    const issuer = await createIssuer(relay, "plans-app");
    const issued = await relay.issue({ subject: "gina", plan: "shared3" });
    const sealed = await sealToken({ prv: "openai", key: UPSTREAM_KEY, sub: "gina", pln: "shared3" }, issuer.issuerKey);
    expect((await chat(relay, issued.secret)).status).toBe(200);
    expect((await chat(relay, sealed)).status).toBe(200);
    expect((await chat(relay, sealed)).status).toBe(200);
    expect((await chat(relay, issued.secret)).status).toBe(429);
    expect((await chat(relay, sealed)).status).toBe(429);
    // A sealed plan the relay does not know: refused, not counted against nothing.
    const unknown = await sealToken({ prv: "openai", key: UPSTREAM_KEY, sub: "gina", pln: "no-such-plan" }, issuer.issuerKey);
    expect((await chat(relay, unknown)).status).toBe(412);
  });

  it("a call limit added to a plan applies to the next call: blocks leased before it serve none", async () => {
    await createPlan([relay], { name: "grow" });
    const { secret } = await relay.issue({ subject: "jack", plan: "grow" });
    // Quick calls grow the token's lease: several calls leased and unused here.
    for (let i = 0; i < 12; i++) expect((await chat(relay, secret)).status).toBe(200);
    await relay.admin.updatePlan({ plan: { name: "grow", callsPerDay: 2n } });
    const before = mock.requests.length;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await chat(relay, secret);
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    expect(mock.requests.length - before).toBe(2);
  });

  it("GetQuota answers the holder over Connect; a deleted plan's tokens are refused", async () => {
    await createPlan([relay], { name: "small", callsPerDay: 5n, callsPerMonth: 100n });
    const { secret } = await relay.issue({ subject: "frank", plan: "small", limits: { maxCalls: 3n } });
    expect((await chat(relay, secret)).status).toBe(200);
    const client = createClient(TokenService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    const q = await client.getQuota({}, { headers: { authorization: `Bearer ${secret}` } });
    expect(q.subject).toBe("frank");
    expect(q.timeZone).toBe("UTC");
    const find = (scope: string, period: string) => q.windows.find((w) => w.scope === scope && w.period === period && w.unit === "calls");
    expect(find("token", "life")).toMatchObject({ limit: 3n, used: 1n, remaining: 2n });
    expect(find("token", "life")?.resetsAt).toBeUndefined();
    expect(find("plan", "day")).toMatchObject({ limit: 5n, used: 1n, remaining: 4n });
    expect(find("plan", "month")).toMatchObject({ limit: 100n, used: 1n, remaining: 99n });
    await expect(client.getQuota({}, { headers: { authorization: "Bearer rai_nope" } })).rejects.toThrow();

    await relay.admin.deletePlan({ name: "small", force: true });
    await relay.app.plans.reload();
    const gone = await chat(relay, secret);
    expect(gone.status).toBe(412);
  });
});

describe("ECDH-ES tokens", () => {
  const { relay, mock } = useRelay({ config: { acceptByokTokens: true } });

  it("may not name a plan: anyone with the relay's public key could spend another user's quota", async () => {
    await createPlan([relay], { name: "byok-victim", callsPerDay: 5n });
    const jwk = (await relay.tokens.getSealingKey({})).jwk;
    const before = mock.requests.length;
    const attack = await sealTokenForRelay({ prv: "openai", key: "sk-attacker-own-key-0123456789", sub: "victim", pln: "byok-victim" }, jwk);
    expect((await chat(relay, attack)).status).toBe(401);
    expect(mock.requests.length).toBe(before);
    // Without a plan the same token is fine (it spends only its own key).
    const own = await sealTokenForRelay({ prv: "openai", key: "sk-attacker-own-key-0123456789", sub: "victim" }, jwk);
    expect((await chat(relay, own)).status).toBe(200);
  });
});
