/**
 * Token budgets by "reserve, then settle" (issue 18, finding 2c/2d; rule in
 * src/tokens/budget-reservations.ts, README "Budgets"). With a budget of 2,000 LLM tokens and
 * 1,000 per call (output cap 1,000; every answer reports 412 + 588 tokens):
 *  (c) clients that leave after the content and before the usage chunk: the relay drains the
 *      answer for its usage; 2 calls admitted, 2,000 metered (before: 10 of 10, 0 metered);
 *  (d) 50 concurrent calls: 2 admitted, spend 2,000 (before: 50 admitted, 50,000: 25x), on
 *      PGlite and PostgreSQL, and across two instances on one PostgreSQL.
 * And the charge of each way a call ends: refunded 0, provider error 0, no readable usage or
 * a drain past its bounds the call's maximum (output cap + body bytes / 4).
 */
import OpenAI from "openai";
import { readFileSync } from "node:fs";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { BudgetReservations, callMaximum, chargeOf, DEFAULT_OUTPUT_RESERVE, type BudgetLedger } from "../src/tokens/budget-reservations.js";
import { Drain } from "../src/relay/usage-drain.js";
import { postgresAvailable } from "./support/databases.js";
import type { Behaviour } from "./support/mock-provider.js";
import type { Driver, TestRelay } from "./support/relay.js";
import { closedPort } from "./support/http.js";
import { availableDrivers, useCluster, useRelay } from "./support/use-relay.js";
import { sleep, waitFor } from "./support/wait.js";

const CHAT = readFileSync(new URL("./fixtures/streams/openai-chat.sse", import.meta.url), "utf8");
/** The recorded stream up to (not including) its usage chunk, and the rest. */
const USAGE_AT = CHAT.lastIndexOf("data: {", CHAT.indexOf('"prompt_tokens"'));
const CONTENT = CHAT.slice(0, USAGE_AT);
const TAIL = CHAT.slice(USAGE_AT);
const SSE = "text/event-stream; charset=utf-8";
const BUDGET = { budgetTokens: 2000n, maxOutputTokens: 1000 };
const messages = [{ role: "user" as const, content: "hi" }];
const figures: string[] = [];
afterAll(() => console.log(`[budgets] ${figures.join("; ")}`));

function chat(relay: TestRelay, secret: string, extraHeaders: Record<string, string> = {}): Promise<Response> {
  return fetch(`${relay.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", ...extraHeaders },
    body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages }),
  });
}

const tokensUsed = async (relay: TestRelay, id: string) => Number((await relay.tokens.getToken({ id })).token?.tokensUsed ?? -1n);
const metered = (relay: TestRelay, id: string) => relay.calls.filter((c) => c.tokenId === id).reduce((a, c) => a + (c.usage?.totalTokens ?? 0), 0);

describe("the reservation rule", () => {
  /** A ledger in memory with the database statement's semantics. */
  const ledger = (): BudgetLedger & { used: number } => {
    const l = {
      used: 0,
      async reserve(_k: string, n: number, limit: number) {
        if (l.used >= limit) return undefined;
        l.used += n;
        return l.used;
      },
      async adjust(_k: string, d: number) {
        l.used = Math.max(0, l.used + d);
      },
    };
    return l;
  };

  it("a call's maximum: output cap (else 4,096) x choices + JSON body bytes / 4; nothing without a JSON body", () => {
    expect(callMaximum({ json: true, bodyBytes: 400, outputCap: 1000, choices: 1 })).toBe(1100);
    expect(callMaximum({ json: true, bodyBytes: 401, outputCap: undefined, choices: 2 })).toBe(2 * DEFAULT_OUTPUT_RESERVE + 101);
    expect(callMaximum({ json: false, bodyBytes: 1e6, outputCap: undefined, choices: 1 })).toBe(0);
  });

  it("what each end is charged", () => {
    const usage = { promptTokens: 10, completionTokens: 5, totalTokens: 15 };
    expect(chargeOf(1100, { kind: "refunded" })).toBe(0);
    expect(chargeOf(1100, { kind: "unanswered" })).toBe(1100);
    expect(chargeOf(1100, { kind: "answered", status: 200, whole: true, usage })).toBe(15);
    expect(chargeOf(1100, { kind: "answered", status: 200, whole: true, usage: undefined })).toBe(1100);
    expect(chargeOf(1100, { kind: "answered", status: 200, whole: false, usage })).toBe(1100);
    expect(chargeOf(1100, { kind: "answered", status: 200, whole: true, usage: { ...usage, totalTokens: 5000 } })).toBe(5000);
    expect(chargeOf(1100, { kind: "answered", status: 429, whole: true, usage: undefined })).toBe(0);
  });

  it("admits while used + reserved < budget; spend stays under budget + one maximum whatever the order of settles", async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const l = ledger();
      const budgets = new BudgetReservations(l);
      const held = [];
      let x = seed;
      const rnd = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
      let spent = 0;
      for (let i = 0; i < 200; i++) {
        if (held.length > 0 && rnd(2) === 0) {
          const [r] = held.splice(rnd(held.length), 1);
          const cost = rnd(r!.amount + 1); // a call never costs more than its maximum
          spent += cost;
          await r!.settle(cost);
        } else {
          const r = await budgets.reserve("t", 1 + rnd(1000), 2000);
          if (r) held.push(r);
        }
        expect(l.used).toBeLessThan(2000 + 1000);
      }
      for (const r of held) {
        spent += r.amount;
        await r.settle(r.amount);
      }
      expect(l.used).toBe(spent);
      expect(spent).toBeLessThan(2000 + 1000);
    }
  });

  it("a drain ends at its byte bound or its time bound", async () => {
    const d = new Drain(() => {}, 50, 100);
    expect(d.take(60)).toBe(false);
    expect(d.take(60)).toBe(true);
    d.stop();
    let timedOut = false;
    const t = new Drain(() => (timedOut = true), 30, 1000);
    await sleep(120);
    expect(timedOut).toBe(true);
    t.stop();
  });
});

describe.each<Driver>(await availableDrivers())("budgets on %s", (driver) => {
  const { relay, mock } = useRelay({
    driver,
    // A port that refuses connections: no byte of a call to it can leave (a refund).
    config: async (m) => ({ upstreamIdleTimeoutMs: 1000, providerBaseUrls: { openai: m.url, xai: `http://127.0.0.1:${await closedPort()}` } }),
  });
  beforeEach(() => {
    mock.reset();
  });

  it("back-to-back calls never race their settle: a budgeted answer ends only once its charge is settled", async () => {
    // A budget below one call's maximum (4,096 without an output cap): had the answer ended
    // before its settle, the next call would find the budget still reserved and get a 429.
    const { secret, id } = await relay.issue({ limits: { budgetTokens: 1000n } });
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-mock-chunks": "5" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages }),
      });
      // Unframed, so its end waits for the settle (a Content-Length would end it at the last byte).
      expect(res.headers.get("content-length")).toBeNull();
      await res.text();
      statuses.push(res.status);
    }
    expect(statuses).toEqual(Array(20).fill(200));
    expect(await tokensUsed(relay, id)).toBe(20 * 15);
  });

  it("(d) 50 concurrent calls: 2 admitted, spend within the budget", async () => {
    mock.behave(() => ({ stream: { contentType: SSE, parts: [CONTENT.slice(0, 500), CONTENT.slice(500), TAIL], delayMs: 400 } }));
    const { secret, id } = await relay.issue({ limits: BUDGET });
    const statuses = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await chat(relay, secret);
        await res.text();
        return res.status;
      }),
    );
    const spent = await tokensUsed(relay, id);
    figures.push(`(d) ${driver}: ${mock.requests.length}/50 admitted, ${metered(relay, id)} metered, tokens_used ${spent} (overshoot ${spent - 2000})`);
    expect(mock.requests).toHaveLength(2);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 429)).toHaveLength(48);
    expect(metered(relay, id)).toBe(2000);
    expect(spent).toBe(2000);
  });

  it("(c) clients that leave before the usage chunk: the answer is drained and metered", async () => {
    // The content at once, the usage chunk 300 ms later; each client leaves once it has the content.
    mock.behave(() => ({ stream: { contentType: SSE, parts: [CONTENT, TAIL], delaysMs: [0, 300] } }));
    const { secret, id } = await relay.issue({ limits: BUDGET });
    const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    const statuses: (number | string)[] = [];
    for (let i = 0; i < 10; i++) {
      try {
        const stream = await client.chat.completions.create({ model: "gpt-4o-mini", stream: true, messages });
        for await (const c of stream) if (c.choices[0]?.finish_reason === "stop") break; // leaves: the SDK aborts
        statuses.push("left");
      } catch (e) {
        statuses.push(e instanceof OpenAI.APIError ? (e.status ?? 0) : String(e));
      }
    }
    const admitted = mock.requests.length;
    await waitFor(() => relay.calls.filter((c) => c.tokenId === id).length === admitted);
    const spent = await tokensUsed(relay, id);
    figures.push(`(c) ${driver}: ${admitted}/10 admitted, ${metered(relay, id)} metered, tokens_used ${spent}; ${statuses.join(",")}`);
    expect(admitted).toBe(2);
    expect(metered(relay, id)).toBe(2000);
    expect(spent).toBe(2000);
    expect(relay.calls.filter((c) => c.tokenId === id).every((c) => c.outcome === Outcome.TRUNCATED && c.usage?.totalTokens === 1000)).toBe(true);
    expect(mock.requests.every((r) => !r.aborted)).toBe(true);
  });

  it("charges a call whose usage cannot be had its maximum: answer without usage, stall after the client left, past 4 MiB", async () => {
    const cases: [string, Behaviour, boolean][] = [
      ["an answer that never reports usage", { stream: { contentType: SSE, parts: [CONTENT, "data: [DONE]\n\n"], delayMs: 5 } }, false],
      ["a client gone, then an upstream that stalls (idle timeout 1 s)", { stream: { contentType: SSE, parts: [CONTENT, TAIL], delaysMs: [0, 20_000] } }, true],
      [
        "a client gone, then more than 4 MiB before the usage",
        { stream: { contentType: SSE, parts: [CONTENT, ": pad\n".repeat(900_000), TAIL], delaysMs: [0, 50, 0] } },
        true,
      ],
    ];
    for (const [name, behaviour, leave] of cases) {
      mock.reset();
      mock.behave(() => behaviour);
      const { secret, id } = await relay.issue({ limits: BUDGET });
      const ac = new AbortController();
      const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        signal: ac.signal,
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages }),
      });
      if (leave) {
        const reader = res.body!.getReader();
        for (let seen = ""; !seen.includes('"finish_reason":"stop"'); ) seen += new TextDecoder().decode((await reader.read()).value);
        ac.abort();
      } else await res.text();
      await waitFor(() => relay.calls.some((c) => c.tokenId === id), 8000);
      const maximum = Math.ceil(1000 + mock.requests[0]!.body.length / 4);
      figures.push(`${driver} ${name}: charged ${await tokensUsed(relay, id)} (maximum ${maximum})`);
      expect(await tokensUsed(relay, id), name).toBe(maximum);
      expect(relay.calls.find((c) => c.tokenId === id)?.outcome, name).toBe(leave ? Outcome.TRUNCATED : Outcome.COMPLETE);
    }
  });

  it("charges nothing for a refunded call or a provider error, and tokens without a budget still stop with their client", async () => {
    const refunded = await relay.issue({ provider: "xai", limits: BUDGET });
    const r = await fetch(`${relay.url}/api/xai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${refunded.secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "grok", messages }),
    });
    expect(r.status).toBe(502);
    expect(await tokensUsed(relay, refunded.id)).toBe(0);

    const errored = await relay.issue({ limits: BUDGET });
    const e = await chat(relay, errored.secret, { "x-mock-status": "400" });
    expect(e.status).toBe(400);
    await e.text();
    expect(await tokensUsed(relay, errored.id)).toBe(0);

    mock.behave(() => ({ stream: { contentType: SSE, parts: [CONTENT, TAIL], delaysMs: [0, 2000] } }));
    const free = await relay.issue();
    const ac = new AbortController();
    const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      signal: ac.signal,
      headers: { authorization: `Bearer ${free.secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages }),
    });
    await res.body!.getReader().read();
    ac.abort();
    expect((await mock.waitForAbort("/chat/completions", 3000)).aborted).toBe(true);
  });
});

describe.skipIf(!(await postgresAvailable()))("two instances on one PostgreSQL", () => {
  const { a, b, mock } = useCluster();

  it("25 concurrent calls on each: the reservation holds across instances", async () => {
    mock.behave(() => ({ stream: { contentType: SSE, parts: [CONTENT, TAIL], delayMs: 800 } }));
    const { secret, id } = await a.issue({ limits: BUDGET });
    const statuses = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const res = await chat(i % 2 === 0 ? a : b, secret);
        await res.text();
        return res.status;
      }),
    );
    const spent = await tokensUsed(a, id);
    figures.push(`(d) two instances: ${mock.requests.length}/50 admitted, tokens_used ${spent}`);
    expect(statuses.filter((s) => s === 200)).toHaveLength(mock.requests.length);
    expect(mock.requests).toHaveLength(2);
    expect(spent).toBe(2000);
  });
});
