/**
 * Costs in usage records, end to end (issue 24, items 5 and 6): calls through the relay with the
 * clients users use (openai SDK, @anthropic-ai/sdk, fetch for Gemini), streamed and not, with
 * the mock provider reporting cached, cache-write and reasoning tokens in each shape's own
 * fields; each `usage_events` row's cost_micro_usd equals the micro-dollars computed by hand
 * from the shipped prices. Then: an unpriced model is recorded with cost unknown; SetPrice
 * reprices the next call (audited), DeletePrice restores; GetUsage by model and by plan sums
 * cost and unpriced calls; WatchUsage streams cost, cached and reasoning tokens and the plan;
 * a refunded call costs 0.
 */
import Anthropic from "@anthropic-ai/sdk";
import { Code } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { UsageGroup } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { usageEvents } from "../src/db/schema/index.js";
import { UsageWriter } from "../src/usage/usage-writer.js";
import { codeOf } from "./support/connect-code.js";
import { useRelay } from "./support/use-relay.js";
import { waitFor } from "./support/wait.js";

const CHUNKS = 5;
const { relay } = useRelay({ mock: { chunks: CHUNKS } });

/** The usage_events row of the one call a token made (after the writer flushed). */
async function rowOf(tokenId: string) {
  await relay.app.usage.flush();
  const rows = await relay.app.database.db.select().from(usageEvents).where(eq(usageEvents.tokenId, tokenId));
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

/** OpenAI: 12,000 prompt tokens of which 4,000 cached; 300 reasoning tokens on top of the 5 generated. */
const OPENAI_USAGE = { "x-mock-prompt-tokens": "12000", "x-mock-cached-tokens": "4000", "x-mock-reasoning-tokens": "300" };
// gpt-4o-2024-08-06 (gpt-4o-2024-*: $2.50 in, $1.25 cached, $10 out per million):
// 8000 x 2.5 + 4000 x 1.25 + 305 x 10 = 20000 + 5000 + 3050
const OPENAI_COST = 28_050;

/** Anthropic: 2,000 uncached input tokens, 10,000 written to the cache, 50,000 read from it. */
const ANTHROPIC_USAGE = { "x-mock-prompt-tokens": "2000", "x-mock-cache-write-tokens": "10000", "x-mock-cached-tokens": "50000" };
// claude-sonnet-4-20250514 ($3 in, $3.75 cache write, $0.30 cache read, $15 out):
// 2000 x 3 + 10000 x 3.75 + 50000 x 0.3 + 5 x 15 = 6000 + 37500 + 15000 + 75
const ANTHROPIC_COST = 58_575;

/** Gemini: 20,000 prompt tokens of which 8,000 cached content; 3,000 thinking tokens. */
const GEMINI_USAGE = { "x-mock-prompt-tokens": "20000", "x-mock-cached-tokens": "8000", "x-mock-reasoning-tokens": "3000" };
// gemini-2.5-flash ($0.30 in, $0.03 cached, $2.50 out, thoughts are output):
// 12000 x 0.3 + 8000 x 0.03 + 3005 x 2.5 = 3600 + 240 + 7512.5 = 11352.5, rounded half up
const GEMINI_COST = 11_353;

describe("each shape's usage record carries its hand-computed cost", () => {
  const openai = (secret: string) => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, defaultHeaders: OPENAI_USAGE });

  it("OpenAI chat, not streamed (openai SDK)", async () => {
    const { secret, id } = await relay.issue();
    const res = await openai(secret).chat.completions.create({ model: "gpt-4o-2024-08-06", messages: [{ role: "user", content: "hi" }] });
    expect(res.usage?.prompt_tokens_details?.cached_tokens).toBe(4000);
    expect(await rowOf(id)).toMatchObject({
      promptTokens: 12_000,
      completionTokens: 305,
      cachedTokens: 4_000,
      reasoningTokens: 300,
      costMicroUsd: OPENAI_COST,
    });
  });

  it("OpenAI chat, streamed (openai SDK): usage from the final chunk", async () => {
    const { secret, id } = await relay.issue();
    const stream = await openai(secret).chat.completions.create({
      model: "gpt-4o-2024-08-06",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe("tok0 tok1 tok2 tok3 tok4 ");
    expect(await rowOf(id)).toMatchObject({ cachedTokens: 4_000, reasoningTokens: 300, costMicroUsd: OPENAI_COST });
  });

  it("OpenAI Responses API, streamed (openai SDK)", async () => {
    const { secret, id } = await relay.issue();
    for await (const _ of await openai(secret).responses.create({ model: "gpt-4o-2024-08-06", input: "hi", stream: true })) {
      // drained
    }
    expect(await rowOf(id)).toMatchObject({ cachedTokens: 4_000, reasoningTokens: 300, costMicroUsd: OPENAI_COST });
  });

  const anthropic = (secret: string) =>
    new Anthropic({ apiKey: secret, baseURL: `${relay.url}/api/anthropic`, maxRetries: 0, defaultHeaders: ANTHROPIC_USAGE });
  const messages: Anthropic.MessageParam[] = [{ role: "user", content: "hi" }];

  it("Anthropic, not streamed (@anthropic-ai/sdk): cache writes and reads at their prices", async () => {
    const { secret, id } = await relay.issue({ provider: "anthropic" });
    const msg = await anthropic(secret).messages.create({ model: "claude-sonnet-4-20250514", max_tokens: 64, messages });
    expect(msg.usage.cache_read_input_tokens).toBe(50_000);
    // The prompt is every input token: 2,000 + 10,000 + 50,000.
    expect(await rowOf(id)).toMatchObject({ promptTokens: 62_000, completionTokens: CHUNKS, cachedTokens: 50_000, costMicroUsd: ANTHROPIC_COST });
  });

  it("Anthropic, streamed (@anthropic-ai/sdk): cache counts from message_start kept past message_delta", async () => {
    const { secret, id } = await relay.issue({ provider: "anthropic" });
    const final = await anthropic(secret).messages.stream({ model: "claude-sonnet-4-20250514", max_tokens: 64, messages }).finalMessage();
    expect(final.usage.output_tokens).toBe(CHUNKS);
    expect(await rowOf(id)).toMatchObject({ promptTokens: 62_000, cachedTokens: 50_000, costMicroUsd: ANTHROPIC_COST });
  });

  const gemini = async (secret: string, method: string): Promise<Response> => {
    const res = await fetch(`${relay.url}/api/gemini/v1beta/models/gemini-2.5-flash:${method}`, {
      method: "POST",
      headers: { "x-goog-api-key": secret, "content-type": "application/json", ...GEMINI_USAGE },
      body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    return res;
  };

  it.each([
    ["not streamed", "generateContent"],
    ["streamed with alt=sse", "streamGenerateContent?alt=sse"],
    ["streamed as a JSON array", "streamGenerateContent"],
  ])("Gemini, %s (fetch): thoughts billed as output, cached content at its price", async (_, method) => {
    const { secret, id } = await relay.issue({ provider: "gemini" });
    await gemini(secret, method);
    expect(await rowOf(id)).toMatchObject({
      promptTokens: 20_000,
      completionTokens: CHUNKS + 3_000,
      cachedTokens: 8_000,
      reasoningTokens: 3_000,
      costMicroUsd: GEMINI_COST,
    });
  });
});

describe("unpriced models, admin prices, reports and the live feed", () => {
  it("a model without a price is recorded with cost unknown", async () => {
    const { secret, id } = await relay.issue();
    const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    await client.chat.completions.create({ model: "gpt-mock-unpriced", messages: [{ role: "user", content: "hi" }] });
    expect(await rowOf(id)).toMatchObject({ model: "gpt-mock-unpriced", costMicroUsd: null });
  });

  it("SetPrice reprices the next call and is audited; ListPrices shows it; DeletePrice restores the shipped one", async () => {
    const model = "gpt-4o-mini-2024-07-18";
    // $1 in, $0.50 cached, $2 out per million.
    await relay.admin.setPrice({ price: { provider: "openai", model, input: 1_000_000n, cachedInput: 500_000n, output: 2_000_000n } });
    const listed = (await relay.admin.listPrices({ provider: "openai" })).prices.find((p) => p.model === model);
    expect(listed).toMatchObject({ source: "admin", input: 1_000_000n, cachedInput: 500_000n, output: 2_000_000n });
    const call = async (): Promise<number | null> => {
      const { secret, id } = await relay.issue();
      const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, defaultHeaders: OPENAI_USAGE });
      await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
      return (await rowOf(id)).costMicroUsd;
    };
    // 8000 x 1 + 4000 x 0.5 + 305 x 2
    expect(await call()).toBe(8_000 + 2_000 + 610);
    const audit = await relay.admin.listAuditEvents({});
    expect(audit.events.find((e) => e.action === "SetPrice")).toMatchObject({ target: `openai/${model}`, detail: expect.stringContaining("input=1000000") });
    await relay.admin.deletePrice({ provider: "openai", model });
    // Shipped gpt-4o-mini-2024-*: 8000 x 0.15 + 4000 x 0.075 + 305 x 0.6 = 1200 + 300 + 183
    expect(await call()).toBe(1_683);
    expect(await codeOf(() => relay.admin.deletePrice({ provider: "openai", model }))).toBe(Code.NotFound);
    expect(await codeOf(() => relay.admin.setPrice({ price: { provider: "no-such-provider", model: "m", input: 1n, output: 1n } }))).toBe(Code.NotFound);
    expect(await codeOf(() => relay.admin.setPrice({ price: { provider: "openai", model: "bad model", input: 1n, output: 1n } }))).toBe(Code.InvalidArgument);
  });

  it("GetUsage by model and by plan sums costs and unpriced calls; WatchUsage streams cost and plan; a refunded call costs 0", async () => {
    const start = new Date(Date.now() - 60_000);
    const watch = new AbortController();
    const events: { plan: string; cost?: bigint; cached?: bigint; reasoning?: bigint }[] = [];
    const feed = (async () => {
      try {
        for await (const res of relay.admin.watchUsage({}, { signal: watch.signal })) {
          const e = res.event!;
          if (e.tokenId.startsWith("tok_plan_")) {
            events.push({ plan: e.plan, cost: e.usage?.costMicroUsd, cached: e.usage?.cachedTokens, reasoning: e.usage?.reasoningTokens });
          }
        }
      } catch {
        // aborted
      }
    })();
    // Records as the engine hands them over, with a plan (no plan need exist to write a record).
    const writer = new UsageWriter(relay.app.database.db, { prices: relay.app.prices });
    const base = { subject: "alice", provider: "openai", keyId: undefined, status: 200, bytes: 10, latencyMs: 5 } as const;
    // Served at the standard tier, as the answer said ("default"): priced at the base price.
    const usage = { promptTokens: 1_000, completionTokens: 100, totalTokens: 1_100, cachedTokens: 400, reasoningTokens: 60, serviceTier: "default" };
    await waitFor(() => relay.app.usage.watchers > 0, 5_000, "the watcher");
    const live = (r: Parameters<UsageWriter["record"]>[0]) => {
      writer.record(r);
      relay.app.usage.record({ ...r, tokenId: `${r.tokenId}-live` });
    };
    // gpt-4o: 600 x 2.5 + 400 x 1.25 + 100 x 10 = 1500 + 500 + 1000
    live({ ...base, tokenId: "tok_plan_1", plan: "pro-costs", model: "gpt-4o", outcome: Outcome.COMPLETE, usage });
    // The engine's own cost wins over the writer's.
    live({ ...base, tokenId: "tok_plan_2", plan: "pro-costs", model: "gpt-4o", outcome: Outcome.COMPLETE, usage, costMicroUsd: 7 });
    live({ ...base, tokenId: "tok_plan_3", plan: "pro-costs", model: "mystery-model", outcome: Outcome.COMPLETE, usage });
    live({ ...base, tokenId: "tok_plan_4", plan: "pro-costs", model: "gpt-4o", outcome: Outcome.REFUNDED, usage: undefined, costMicroUsd: 999 });
    await writer.close();
    await relay.app.usage.flush();

    const refunded = await relay.app.database.db.select().from(usageEvents).where(eq(usageEvents.tokenId, "tok_plan_4"));
    expect(refunded).toMatchObject([{ plan: "pro-costs", costMicroUsd: 0 }]);

    const byPlan = await relay.admin.getUsage({ groupBy: UsageGroup.PLAN, start: timestamp(start), end: timestamp(new Date(Date.now() + 60_000)) });
    // Both copies (writer and live) of each record: 2 x (3000 + 7 + 0 + 0), 2 unpriced.
    expect(byPlan.rows.find((r) => r.key === "pro-costs")).toMatchObject({ calls: 6n, costMicroUsd: 2n * 3_007n, unpricedCalls: 2n });
    // Calls of tokens without a plan group under "".
    expect(byPlan.rows.find((r) => r.key === "")?.costMicroUsd).toBeGreaterThan(0n);
    const byModel = await relay.admin.getUsage({ groupBy: UsageGroup.MODEL, start: timestamp(start), end: timestamp(new Date(Date.now() + 60_000)) });
    expect(byModel.rows.find((r) => r.key === "mystery-model")).toMatchObject({ unpricedCalls: 2n, costMicroUsd: 0n });
    expect(byModel.rows.find((r) => r.key === "gemini-2.5-flash")).toMatchObject({ costMicroUsd: 3n * BigInt(GEMINI_COST), unpricedCalls: 0n });

    await waitFor(() => events.length >= 4, 5_000, "four live events");
    watch.abort();
    await feed;
    expect(events).toEqual([
      { plan: "pro-costs", cost: 3_000n, cached: 400n, reasoning: 60n },
      { plan: "pro-costs", cost: 7n, cached: 400n, reasoning: 60n },
      { plan: "pro-costs", cost: undefined, cached: 400n, reasoning: 60n },
      { plan: "pro-costs", cost: 0n, cached: 0n, reasoning: 0n },
    ]);
  });
});

function timestamp(d: Date) {
  return { seconds: BigInt(Math.floor(d.getTime() / 1000)), nanos: 0 };
}
