/**
 * One token holder must not knock a shared pool out for everyone (DESIGN 8, issue 17 finding 5).
 * A hostile token asking for a model the keys cannot use (403), or drawing 429s with
 * `Retry-After: 999999`, rests those keys for that model only and for at most keyCooldownMaxMs,
 * disables none, and is refused itself once past its key error budget; every other token's
 * calls to other models keep getting 200. A 5xx is never retried on another key. Only answers
 * proving a key bad (401, a provider's "invalid key" body) strike it, and it is disabled at the
 * third strike, never by one call. Arrivals are `mock.requests` (one per provider attempt).
 */
import { and, eq, ne } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { PoolStrategy } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { listKeys } from "../src/db/queries/pools.js";
import { usageEvents, type UpstreamKeyRow } from "../src/db/schema/index.js";
import type { RecordedRequest } from "./support/mock-provider.js";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const { relay, mock } = useRelay();
let pools = 0;
/** Upstream keys that answer 401 `invalid_api_key`, and how many 401s a "flaky" key has left. */
const badKeys = new Set<string>();
const flaky = new Map<string, number>();

const modelOf = (rec: RecordedRequest): string => {
  try {
    return String((JSON.parse(rec.body.toString()) as { model?: unknown }).model ?? "");
  } catch {
    return "";
  }
};
const keyOf = (rec: RecordedRequest): string => String(rec.headers.authorization ?? rec.headers["x-goog-api-key"]).replace("Bearer ", "");

beforeAll(async () => {
  mock.behave((rec) => {
    const key = keyOf(rec);
    const model = modelOf(rec);
    // OpenAI answers 401 to an organization or project the key does not belong to.
    if (rec.headers["openai-organization"] !== undefined || rec.headers["openai-project"] !== undefined) {
      return { status: 401, body: { error: { message: "No such organization", type: "invalid_request_error", code: "invalid_organization" } } };
    }
    if (badKeys.has(key))
      return { status: 401, body: { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } } };
    if ((flaky.get(key) ?? 0) > 0) {
      flaky.set(key, flaky.get(key)! - 1);
      return { status: 401, body: { error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } } };
    }
    if (key.startsWith("gem-bad")) return { status: 400, body: geminiError("API key not valid. Please pass a valid API key.", "API_KEY_INVALID") };
    if (rec.path.includes("/models/echo:")) return { status: 400, body: geminiError("Invalid value API_KEY_INVALID for field contents", undefined) };
    if (model.startsWith("forbidden")) {
      return {
        status: 403,
        body: {
          error: { message: `The model \`${model}\` does not exist or you do not have access to it.`, type: "invalid_request_error", code: "model_not_found" },
        },
      };
    }
    if (model === "hot")
      return {
        status: 429,
        headers: { "retry-after": "999999" },
        body: { error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } },
      };
    if (model === "broken") return { status: 500 };
    return undefined;
  });
});

function geminiError(message: string, reason: string | undefined) {
  const details = reason ? [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason, domain: "googleapis.com" }] : [];
  return { error: { code: 400, message, status: "INVALID_ARGUMENT", details } };
}

/** A fresh pool of `keys` (each name unique in its last 4 characters) and a token on it. */
async function pool(keys: string[], provider = "openai") {
  const name = `pool-${++pools}`;
  await relay.admin.createPool({ name, provider, strategy: PoolStrategy.ROUND_ROBIN });
  expect((await relay.admin.addKeys({ pool: name, keys })).added).toBe(keys.length);
  const rows = () => listKeys(relay.app.database.db, name);
  /** Key -> its id. */
  const ids = new Map((await rows()).map((r) => [keys.find((k) => r.masked.endsWith(k.slice(-4)))!, r.id]));
  return { name, rows, ids, token: (maxCalls = 1000) => poolToken(name, provider, maxCalls) };
}

async function poolToken(name: string, provider: string, maxCalls: number) {
  const res = await relay.tokens.issueToken({ provider, credential: { case: "pool", value: name }, limits: { maxCalls: BigInt(maxCalls) } });
  return { secret: res.secret, id: res.token!.id };
}

const fourKeys = (tag: string) => [1, 2, 3, 4].map((i) => `sk-${tag}-key-${i}${tag.slice(0, 2)}${i}${i}`);

/** One chat call: its status, error code (when the relay answered), Retry-After and arrivals. */
async function chat(secret: string, model: string) {
  const before = mock.requests.length;
  const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
  const text = await res.text();
  // The relay's own errors carry a string code; a provider's may not.
  const code = res.status === 200 ? "" : String((JSON.parse(text) as { error?: { code?: unknown } }).error?.code ?? "");
  return { status: res.status, code, retryAfter: res.headers.get("retry-after"), arrivals: mock.requests.length - before };
}

/** The audit events about these keys, once their fire-and-forget writes have landed. */
async function auditOf(ids: Iterable<string>, expected: number) {
  const wanted = new Set(ids);
  let events: { action: string; target: string; detail: string }[] = [];
  for (let i = 0; i < 50; i++) {
    events = (await relay.app.audit.list(500)).events.filter((e) => wanted.has(e.target));
    if (events.length >= expected) break;
    await sleep(20);
  }
  await sleep(100);
  return (await relay.app.audit.list(500)).events.filter((e) => wanted.has(e.target));
}

/** When a cool-down audit event says the rest ends, in ms from now. */
const restEndsIn = (detail: string) => Date.parse(/until (\S+)$/.exec(detail)![1]!) - Date.now();
const health = (rows: UpstreamKeyRow[]) => rows.map((r) => ({ enabled: r.enabled, strikes: r.authStrikes, cooldownUntil: r.cooldownUntil }));
const healthy = { enabled: true, strikes: 0, cooldownUntil: null };

describe("a hostile token cannot take a shared pool down", () => {
  it("403 for a model only it asks for: that key rests for that model, none is disabled, others get 200", async () => {
    const p = await pool(fourKeys("forb"));
    const hostile = await p.token();
    const other = await p.token();
    const got = [];
    for (let i = 0; i < 10; i++) {
      got.push(await chat(hostile.secret, "forbidden"));
      expect((await chat(other.secret, "gpt-mock")).status, `another token's call after hostile call ${i + 1}`).toBe(200);
    }
    // One provider call per 403 (never retried on another key), each resting one key for "forbidden".
    expect(got.slice(0, 4).map((g) => `${g.status} ${g.arrivals}`)).toEqual(Array(4).fill("403 1"));
    // Then every key rests for that model: the relay answers 429 itself, nothing sent, refunded.
    for (const g of got.slice(4)) {
      expect(g).toMatchObject({ status: 429, code: "rate_limited", arrivals: 0 });
      expect(Number(g.retryAfter)).toBeGreaterThan(0);
      expect(Number(g.retryAfter)).toBeLessThanOrEqual(60);
    }
    await expectUsedSettles(hostile.id, 4);
    expect(health(await p.rows())).toEqual(Array(4).fill(healthy));
    const audit = await auditOf(p.ids.values(), 4);
    expect(audit.map((e) => e.action)).toEqual(Array(4).fill("key.cooldown"));
    for (const e of audit) {
      expect(e.detail).toContain('403 for model "forbidden"');
      expect(restEndsIn(e.detail)).toBeLessThanOrEqual(60_000);
    }
  });

  it("429 with Retry-After: 999999: fails over, rests keys for that model only, for at most 60 s", async () => {
    const p = await pool(fourKeys("hot"));
    const hostile = await p.token();
    const other = await p.token();
    const got = [];
    for (let i = 0; i < 5; i++) {
      got.push(await chat(hostile.secret, "hot"));
      expect((await chat(other.secret, "gpt-mock")).status).toBe(200);
    }
    // Call 1 tries 3 keys (upstreamAttempts) and passes the last 429 on; call 2 the 4th key; then none is left for "hot".
    expect(got.map((g) => `${g.status} ${g.arrivals}`)).toEqual(["429 3", "429 1", "429 0", "429 0", "429 0"]);
    expect(got[0]!.retryAfter).toBe("999999"); // the provider's answer, as it came
    expect(Number(got[2]!.retryAfter)).toBeLessThanOrEqual(60); // the relay's own
    const hostileCalls = relay.calls.filter((c) => c.tokenId === hostile.id);
    // Every attempt with its key: three different keys of the pool, the last one named as the call's key.
    const attempts = hostileCalls[0]!.attempts!.split(",").map((a) => a.split(":"));
    expect(attempts.map(([, status]) => status)).toEqual(["429", "429", "429"]);
    expect(new Set(attempts.map(([id]) => id)).size).toBe(3);
    for (const [id] of attempts) expect([...p.ids.values()]).toContain(id);
    expect(hostileCalls[0]!.keyId).toBe(attempts[2]![0]);
    expect(hostileCalls[1]!.attempts).toBeUndefined(); // a single attempt
    expect(hostileCalls.map((c) => Outcome[c.outcome])).toEqual(["UPSTREAM_ERROR", "UPSTREAM_ERROR", "REFUNDED", "REFUNDED", "REFUNDED"]);
    expect(health(await p.rows())).toEqual(Array(4).fill(healthy));
    const audit = await auditOf(p.ids.values(), 4);
    expect(audit.map((e) => e.action)).toEqual(Array(4).fill("key.cooldown"));
    for (const e of audit) expect(restEndsIn(e.detail)).toBeLessThanOrEqual(60_000);
    // The usage log keeps every attempt.
    await relay.app.usage.flush();
    const logged = await relay.app.database.db
      .select({ attempts: usageEvents.attempts })
      .from(usageEvents)
      .where(and(eq(usageEvents.tokenId, hostile.id), ne(usageEvents.attempts, "")));
    expect(logged).toEqual([{ attempts: hostileCalls[0]!.attempts }]);
  });

  it("a token drawing key errors on ever new models is refused before its calls are counted", async () => {
    const p = await pool(fourKeys("budg"));
    const hostile = await p.token();
    const other = await p.token();
    const got = [];
    for (let i = 0; i < 10; i++) {
      got.push(await chat(hostile.secret, `forbidden-${i}`));
      expect((await chat(other.secret, "gpt-mock")).status).toBe(200);
    }
    // tokenKeyErrorsPerMinute = 5: five 403s reach the provider, then the token itself gets 429.
    expect(got.slice(0, 5).map((g) => `${g.status} ${g.arrivals}`)).toEqual(Array(5).fill("403 1"));
    for (const g of got.slice(5)) {
      expect(g).toMatchObject({ status: 429, code: "rate_limited", arrivals: 0 });
      expect(Number(g.retryAfter)).toBeGreaterThan(0);
      expect(Number(g.retryAfter)).toBeLessThanOrEqual(60);
    }
    // Refused before counting: no call used, none recorded.
    await expectUsedSettles(hostile.id, 5);
    expect(relay.calls.filter((c) => c.tokenId === hostile.id)).toHaveLength(5);
    expect(health(await p.rows())).toEqual(Array(4).fill(healthy));
  });

  it("5xx: one provider call per client call, never retried on another key", async () => {
    const p = await pool(fourKeys("five"));
    const capped = await p.token(3);
    const got = [];
    for (let i = 0; i < 5; i++) got.push(await chat(capped.secret, "broken"));
    expect(got.map((g) => `${g.status} ${g.arrivals}`)).toEqual(["500 1", "500 1", "500 1", "429 0", "429 0"]);
    expect(health(await p.rows())).toEqual(Array(4).fill(healthy));
  });
});

describe("a client cannot make a key look bad", () => {
  it("OpenAI-Organization / OpenAI-Project from the client never reach the provider (the key's own organization is used)", async () => {
    const p = await pool(fourKeys("orgs"));
    const t = await p.token();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${t.secret}`,
          "content-type": "application/json",
          "openai-organization": "org-not-yours",
          "openai-project": "proj_x",
        },
        body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
      });
      expect(res.status).toBe(200);
    }
    expect(health(await p.rows())).toEqual(Array(4).fill(healthy));
  });
});

describe("strikes: only answers that prove a key bad, and never one call", () => {
  it("401: a strike each time, the call fails over, the key is disabled at the third strike", async () => {
    const keys = ["sk-strike-key-a1a1", "sk-strike-key-b2b2", "sk-strike-key-c3c3"];
    badKeys.add(keys[1]!);
    const p = await pool(keys);
    const bad = p.ids.get(keys[1]!)!;
    const t = await p.token();
    const strikes = async () => (await p.rows()).find((r) => r.id === bad)!;
    let hits = 0;
    for (let i = 0; i < 12 && hits < 3; i++) {
      const res = await chat(t.secret, "gpt-mock");
      expect(res.status).toBe(200);
      const rec = relay.calls.at(-1)!;
      if (rec.attempts === undefined) continue;
      hits++;
      expect(rec.attempts).toBe(`${bad}:401,${rec.keyId}:200`);
      const row = await strikes();
      expect({ strikes: row.authStrikes, enabled: row.enabled }).toEqual({ strikes: hits, enabled: hits < 3 });
    }
    expect(hits).toBe(3);
    expect((await strikes()).disabledReason).toBe("upstream answered 401");
    const audit = await auditOf([bad], 1);
    expect(audit.map((e) => e.action)).toEqual(["key.disabled"]);
    expect(audit[0]!.detail).toContain("3 strikes");
    // Disabled: no more calls go to it.
    const before = mock.requests.length;
    for (let i = 0; i < 6; i++) expect((await chat(t.secret, "gpt-mock")).status).toBe(200);
    expect(mock.requests.slice(before).map(keyOf)).not.toContain(keys[1]);
  });

  it("a good answer clears the strikes", async () => {
    const key = "sk-flaky-key-f9f9";
    flaky.set(key, 2);
    const p = await pool([key]);
    const t = await p.token();
    const strikes = async () => (await p.rows())[0]!.authStrikes;
    expect((await chat(t.secret, "gpt-mock")).status).toBe(401); // no other key: passed on
    expect((await chat(t.secret, "gpt-mock")).status).toBe(401);
    expect(await strikes()).toBe(2);
    expect((await chat(t.secret, "gpt-mock")).status).toBe(200);
    for (let i = 0; i < 50 && (await strikes()) !== 0; i++) await sleep(20);
    expect(await strikes()).toBe(0);
    expect((await p.rows())[0]!.enabled).toBe(true);
  });

  it("Gemini: an API_KEY_INVALID reason is a strike; the same words in a message are not", async () => {
    const bad = await pool(["gem-bad-key-g1g1"], "gemini");
    const good = await pool(["gem-good-key-g2g2"], "gemini");
    const call = async (secret: string, model: string) =>
      fetch(`${relay.url}/api/gemini/v1beta/models/${model}:generateContent`, {
        method: "POST",
        headers: { "x-goog-api-key": secret, "content-type": "application/json" },
        body: JSON.stringify({ contents: [{ parts: [{ text: "hi" }] }] }),
      });
    const badRes = await call((await bad.token()).secret, "gemini-mock");
    expect(badRes.status).toBe(400); // passed on, not retried (a 400 is not a failover answer)
    expect(await badRes.text()).toContain("API_KEY_INVALID");
    for (let i = 0; i < 50 && (await bad.rows())[0]!.authStrikes !== 1; i++) await sleep(20);
    expect(health(await bad.rows())).toEqual([{ ...healthy, strikes: 1 }]);

    const echoed = await call((await good.token()).secret, "echo");
    expect(echoed.status).toBe(400);
    expect(await echoed.text()).toContain("API_KEY_INVALID");
    await sleep(200);
    expect(health(await good.rows())).toEqual([healthy]);
  });
});

/** calls_used settles at `expected` (unused leased calls go back after leaseIdleMs). */
async function expectUsedSettles(id: string, expected: number): Promise<void> {
  for (let i = 0; i < 100 && (await callsUsed(relay, id)) !== expected; i++) await sleep(30);
  expect(await callsUsed(relay, id), `calls_used of ${id}`).toBe(expected);
}
