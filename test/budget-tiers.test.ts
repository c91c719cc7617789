/**
 * Dollar budgets must not undercount a call the provider bills above the base price: OpenAI's
 * priority processing (the answer's `service_tier`, which reports the tier that served the call;
 * "auto" or no field is charged the standard price), Anthropic's `usage.service_tier`, and the long-context tiers (Gemini 2.5
 * Pro and 3 Pro above 200k prompt tokens, Claude Sonnet 4/4.5 above 200k input tokens with the
 * 1M context). Each call's charge is computed here by hand from the providers' price pages
 * (src/pricing/builtin-prices.ts cites them); the reservation made before the call (a call cut
 * before its answer is charged it) is priced at the dearest tier it could be billed at, so the
 * README's promise (a budget is passed by less than one call's maximum) holds under concurrency.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { costOf, maxCostOf } from "../src/pricing/cost.js";
import type { ModelPrice } from "../src/pricing/types.js";
import { anthropicShape } from "../src/providers/shapes/anthropic.js";
import { openaiShape } from "../src/providers/shapes/openai.js";
import type { RecordedRequest } from "./support/mock-provider.js";
import { useRelay } from "./support/use-relay.js";
import { waitFor } from "./support/wait.js";

const CHUNKS = 5;
const { relay, mock } = useRelay({ mock: { chunks: CHUNKS } });

/** Micro-dollars of `tokens` at `perMillion` micro-dollars per million tokens, unrounded. */
const at = (tokens: number, perMillion: number): number => (tokens * perMillion) / 1_000_000;

/** The one call a token made, once the engine reported it. */
async function callOf(id: string) {
  await waitFor(() => relay.calls.some((c) => c.tokenId === id));
  const calls = relay.calls.filter((c) => c.tokenId === id);
  expect(calls).toHaveLength(1);
  return calls[0]!;
}

async function usedUsd(id: string): Promise<number> {
  return Number((await relay.tokens.getToken({ id })).token!.microUsdUsed);
}

describe("OpenAI service tiers", () => {
  const openai = (secret: string, headers: Record<string, string>) =>
    new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, defaultHeaders: { "x-mock-prompt-tokens": "100000", ...headers } });
  // gpt-4o (https://platform.openai.com/docs/pricing): standard $2.50 in, $10 out; priority $4.25 in, $17 out.
  const STANDARD = at(100_000, 2_500_000) + at(CHUNKS, 10_000_000);
  const PRIORITY = at(100_000, 4_250_000) + at(CHUNKS, 17_000_000);

  it.each([
    ["priority", PRIORITY],
    ["auto", STANDARD],
    ["none", STANDARD],
    ["default", STANDARD],
    ["flex", STANDARD],
  ])("chat answer with service_tier %s: charged %d micro-dollars, on the budget and the record", async (tier, cost) => {
    const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: 10_000_000n } });
    const res = await openai(secret, { "x-mock-service-tier": tier }).chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
    expect(res.usage?.prompt_tokens).toBe(100_000);
    expect((await callOf(id)).costMicroUsd).toBe(Math.round(cost));
    expect(await usedUsd(id)).toBe(Math.round(cost));
  });

  it("a streamed chat answer and a streamed Responses answer report priority in their final events", async () => {
    const chat = await relay.issue({ limits: { budgetMicroUsd: 10_000_000n } });
    const stream = await openai(chat.secret, { "x-mock-service-tier": "priority" }).chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const _ of stream) {
      // drained
    }
    expect(await usedUsd(chat.id)).toBe(Math.round(PRIORITY));
    const responses = await relay.issue({ limits: { budgetMicroUsd: 10_000_000n } });
    for await (const _ of await openai(responses.secret, { "x-mock-service-tier": "priority" }).responses.create({
      model: "gpt-4o",
      input: "hi",
      stream: true,
    })) {
      // drained
    }
    expect(await usedUsd(responses.id)).toBe(Math.round(PRIORITY));
  });

  it("a call cut before its answer is charged its reservation, priced at the priority tier", async () => {
    const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: 10_000_000n } });
    const body = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], max_tokens: 100 });
    const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-mock-reset": "after-body" },
      body,
    });
    expect(res.status).toBeGreaterThanOrEqual(500);
    // Input estimate: body bytes / 4 at the dearest input-side price ($4.25); 100 output tokens at $17.
    const max = Math.ceil(at(Math.ceil(Buffer.byteLength(body) / 4), 4_250_000) + at(100, 17_000_000));
    expect(await usedUsd(id)).toBe(max);
    expect((await callOf(id)).costMicroUsd).toBe(max);
  });

  it("concurrent priority calls pass a dollar budget by less than one call's maximum", async () => {
    // The provider generates the whole cap and bills priority, as a project whose default is priority does.
    mock.behave((rec: RecordedRequest) => {
      if (!rec.path.endsWith("/chat/completions")) return undefined;
      const req = JSON.parse(rec.body.toString("utf8")) as { model: string; max_tokens: number };
      const answer = {
        id: "chatcmpl-tier",
        object: "chat.completion",
        created: 0,
        model: req.model,
        service_tier: "priority",
        choices: [{ index: 0, message: { role: "assistant", content: "x" }, finish_reason: "length" }],
        usage: { prompt_tokens: 10, completion_tokens: req.max_tokens, total_tokens: 10 + req.max_tokens },
      };
      return { stream: { contentType: "application/json", parts: [JSON.stringify(answer)], delaysMs: [400] } };
    });
    try {
      const budget = 100_000;
      const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: BigInt(budget) } });
      const body = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], max_tokens: 2000 });
      const statuses = await Promise.all(
        Array.from({ length: 12 }, () =>
          fetch(`${relay.url}/api/openai/v1/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
            body,
          }).then(async (r) => (await r.arrayBuffer(), r.status)),
        ),
      );
      expect(statuses).toContain(200);
      expect(statuses).toContain(429);
      const oneCallMax = Math.ceil(at(Math.ceil(Buffer.byteLength(body) / 4), 4_250_000) + at(2000, 17_000_000));
      // What the provider bills: each answered call at its priority price (10 in, 2000 out).
      const billed = statuses.filter((s) => s === 200).length * Math.round(at(10, 4_250_000) + at(2000, 17_000_000));
      expect(await usedUsd(id)).toBe(billed);
      expect(billed).toBeLessThan(budget + oneCallMax);
    } finally {
      mock.behave(undefined);
    }
  });

  it("an admin's price for a tiered model keeps the shipped tiers, scaled to the admin's price", async () => {
    // $2 in, $8 out: 0.8 x the shipped gpt-4o, so priority is 0.8 x $4.25 in and 0.8 x $17 out.
    await relay.admin.setPrice({ price: { provider: "openai", model: "gpt-4o", input: 2_000_000n, output: 8_000_000n } });
    try {
      const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: 10_000_000n } });
      await openai(secret, { "x-mock-service-tier": "priority" }).chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
      expect(await usedUsd(id)).toBe(Math.round(at(100_000, 3_400_000) + at(CHUNKS, 13_600_000)));
      const standard = await relay.issue({ limits: { budgetMicroUsd: 10_000_000n } });
      await openai(standard.secret, { "x-mock-service-tier": "default" }).chat.completions.create({
        model: "gpt-4o",
        messages: [{ role: "user", content: "hi" }],
      });
      expect(await usedUsd(standard.id)).toBe(Math.round(at(100_000, 2_000_000) + at(CHUNKS, 8_000_000)));
    } finally {
      await relay.admin.deletePrice({ provider: "openai", model: "gpt-4o" });
    }
  });
});

describe("Anthropic's service tier", () => {
  it("is read from message_start's usage and kept through message_delta", () => {
    const meter = anthropicShape.meter!("text/event-stream");
    const usage = { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1, service_tier: "priority" };
    meter.feed(Buffer.from(`event: message_start\ndata: ${JSON.stringify({ type: "message_start", message: { id: "m", usage } })}\n\n`));
    meter.feed(Buffer.from(`event: message_delta\ndata: ${JSON.stringify({ type: "message_delta", delta: {}, usage: { output_tokens: 30 } })}\n\n`));
    expect(meter.result()).toMatchObject({ promptTokens: 12, completionTokens: 30, serviceTier: "priority" });
  });

  it("OpenAI's is read from the answer, beside its usage; a tier name that is no tier is left out", () => {
    const meter = openaiShape.meter!("application/json");
    meter.feed(Buffer.from(JSON.stringify({ service_tier: "priority", usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })));
    expect(meter.result()).toMatchObject({ serviceTier: "priority" });
    const odd = openaiShape.meter!("application/json");
    odd.feed(Buffer.from(JSON.stringify({ service_tier: "x".repeat(1000), usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })));
    expect(odd.result()?.serviceTier).toBeUndefined();
  });
});

describe("long-context tiers", () => {
  const gemini = async (secret: string, model: string, promptTokens: number): Promise<void> => {
    const res = await fetch(`${relay.url}/api/gemini/v1beta/models/${model}:generateContent`, {
      method: "POST",
      headers: { "x-goog-api-key": secret, "content-type": "application/json", "x-mock-prompt-tokens": String(promptTokens) },
      body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  };

  // https://ai.google.dev/gemini-api/docs/pricing: 2.5 Pro $1.25 / $10 up to 200k prompt tokens,
  // $2.50 / $15 above; 3 Pro preview $2 / $12, above $4 / $18.
  it.each([
    ["gemini-2.5-pro", 200_000, at(200_000, 1_250_000) + at(CHUNKS, 10_000_000)],
    ["gemini-2.5-pro", 250_000, at(250_000, 2_500_000) + at(CHUNKS, 15_000_000)],
    ["gemini-3-pro-preview", 300_000, at(300_000, 4_000_000) + at(CHUNKS, 18_000_000)],
  ])("%s with %d prompt tokens", async (model, prompt, cost) => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { budgetMicroUsd: 10_000_000n } });
    await gemini(secret, model, prompt);
    expect((await callOf(id)).costMicroUsd).toBe(Math.round(cost));
    expect(await usedUsd(id)).toBe(Math.round(cost));
  });

  it("a Gemini call whose input the relay cannot see reserves a whole context at the long-context price", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { budgetMicroUsd: 10_000_000n } });
    const res = await fetch(`${relay.url}/api/gemini/v1beta/models/gemini-2.5-pro:generateContent`, {
      method: "POST",
      headers: { "x-goog-api-key": secret, "content-type": "application/json", "x-mock-reset": "after-body" },
      body: JSON.stringify({
        contents: [{ role: "user", parts: [{ fileData: { fileUri: "https://example.com/a.pdf", mimeType: "application/pdf" } }] }],
        generationConfig: { maxOutputTokens: 100 },
      }),
    });
    expect(res.status).toBeGreaterThanOrEqual(500);
    // 1,000,000 input tokens (README: a whole context) at $2.50, 100 output tokens at $15.
    expect(await usedUsd(id)).toBe(Math.ceil(at(1_000_000, 2_500_000) + at(100, 15_000_000)));
  });

  it("an admin's Gemini 2.5 Pro price keeps the long-context tier, scaled", async () => {
    // $1 in, $8 out (0.8 x): above 200k, 0.8 x $2.50 and 0.8 x $15.
    await relay.admin.setPrice({ price: { provider: "gemini", model: "gemini-2.5-pro", input: 1_000_000n, output: 8_000_000n } });
    try {
      const { secret, id } = await relay.issue({ provider: "gemini", limits: { budgetMicroUsd: 10_000_000n } });
      await gemini(secret, "gemini-2.5-pro", 250_000);
      expect(await usedUsd(id)).toBe(Math.round(at(250_000, 2_000_000) + at(CHUNKS, 12_000_000)));
    } finally {
      await relay.admin.deletePrice({ provider: "gemini", model: "gemini-2.5-pro" });
    }
  });

  it("Claude Sonnet 4.5 above 200k input tokens (cache reads count toward it), @anthropic-ai/sdk", async () => {
    const { secret, id } = await relay.issue({ provider: "anthropic", limits: { budgetMicroUsd: 10_000_000n } });
    const client = new Anthropic({
      apiKey: secret,
      baseURL: `${relay.url}/api/anthropic`,
      maxRetries: 0,
      defaultHeaders: { "x-mock-prompt-tokens": "100000", "x-mock-cached-tokens": "150000", "x-mock-cache-write-tokens": "0" },
    });
    const msg = await client.messages.create({ model: "claude-sonnet-4-5", max_tokens: 64, messages: [{ role: "user", content: "hi" }] });
    expect(msg.usage.cache_read_input_tokens).toBe(150_000);
    // https://www.anthropic.com/pricing: above 200k input tokens $6 in, $0.60 cache read, $22.50 out.
    const cost = Math.round(at(100_000, 6_000_000) + at(150_000, 600_000) + at(CHUNKS, 22_500_000));
    expect(await usedUsd(id)).toBe(cost);
    expect((await callOf(id)).costMicroUsd).toBe(cost);
  });
});

describe("a price with both tiers (none shipped has both; an admin cannot state them yet)", () => {
  // Base $1 / $4; priority $2 / $6; above 1,000 prompt tokens $3 / $5.
  const price: ModelPrice = {
    input: 1_000_000,
    output: 4_000_000,
    priority: { input: 2_000_000, output: 6_000_000 },
    longContext: { above: 1_000, input: 3_000_000, output: 5_000_000 },
  };
  const usage = (prompt: number, tier?: string) => ({
    promptTokens: prompt,
    completionTokens: 100,
    totalTokens: prompt + 100,
    ...(tier ? { serviceTier: tier } : {}),
  });

  it("charges the tier the usage reports; both at once is long context scaled by priority/base", () => {
    expect(costOf(price, usage(1_000, "default"))).toBe(1_000 + 400);
    expect(costOf(price, usage(1_000, "priority"))).toBe(2_000 + 600);
    expect(costOf(price, usage(1_001, "default"))).toBe(3_003 + 500);
    // $3 x 2/1 = $6 in, $5 x 6/4 = $7.50 out.
    expect(costOf(price, usage(1_001, "priority"))).toBe(6_006 + 750);
    // No tier named: the base tier (long context still applies by the prompt's size).
    expect(costOf(price, usage(1_001))).toBe(3_003 + 500);
  });

  it("reserves at priority, and at long context above the threshold", () => {
    expect(maxCostOf(price, 1_000, 100)).toBe(2_000 + 600);
    expect(maxCostOf(price, 1_001, 100)).toBe(6_006 + 750);
  });
});
