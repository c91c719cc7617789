/**
 * Every streaming shape the built-in providers use is metered (issue 18, finding 2a/2b), read
 * from recorded real-format streams (test/fixtures/streams/, see its README) however the bytes
 * are split: OpenAI chat SSE with include_usage, OpenAI Responses SSE (usage in
 * `response.completed`), Anthropic SSE (message_start + message_delta), Gemini SSE (CRLF) and
 * Gemini's JSON-array stream (no alt=sse), Azure chat SSE, Groq (`x_groq.usage`). Then through
 * the relay: a budget of 2,000 LLM tokens, 1,000 per call, admits 2 calls of 10 whatever the
 * stream's shape (before: 10 of 10 admitted, 0 metered, for Responses and Gemini JSON streams).
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI, { AzureOpenAI } from "openai";
import { readFileSync } from "node:fs";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { BUILTIN_PROVIDERS } from "../src/providers/builtin/index.js";
import type { Usage } from "../src/providers/types.js";
import { useRelay } from "./support/use-relay.js";

const fixture = (name: string) => readFileSync(new URL(`./fixtures/streams/${name}`, import.meta.url));
/** What every fixture reports: 412 prompt + 588 completion tokens. */
const ALL_USAGE: Usage = { promptTokens: 412, completionTokens: 588, totalTokens: 1000 };
const TEXT = "Bonjour 👋 ça va très bien.";

interface Case {
  file: string;
  contentType: string;
  providers: string[];
  /** The service tier the stream names (priced apart: src/pricing/tiers.ts). */
  tier?: string;
}

const COMPATIBLE = BUILTIN_PROVIDERS.filter((p) => p.shape.name === "openai").map((p) => p.id);
const CASES: Case[] = [
  { file: "openai-chat.sse", contentType: "text/event-stream; charset=utf-8", providers: COMPATIBLE, tier: "default" },
  { file: "openai-responses.sse", contentType: "text/event-stream; charset=utf-8", providers: COMPATIBLE, tier: "auto" },
  { file: "azure-chat.sse", contentType: "text/event-stream; charset=utf-8", providers: ["azure-openai"] },
  { file: "groq-chat.sse", contentType: "text/event-stream", providers: ["groq"] },
  { file: "anthropic-messages.sse", contentType: "text/event-stream; charset=utf-8", providers: ["anthropic"], tier: "standard" },
  { file: "gemini.sse", contentType: "text/event-stream", providers: ["gemini"] },
  { file: "gemini-array.json", contentType: "application/json; charset=UTF-8", providers: ["gemini"] },
];

function meter(provider: string, contentType: string, parts: Buffer[]): Usage | undefined {
  const m = BUILTIN_PROVIDERS.find((p) => p.id === provider)!.shape.meter(contentType);
  for (const p of parts) m.feed(p);
  return m.result();
}

/** A small deterministic generator, so a failing split can be replayed. */
function splits(body: Buffer, seed: number, pieces: number): Buffer[] {
  let x = seed;
  const cuts = new Set<number>();
  while (cuts.size < pieces - 1) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    cuts.add(1 + (x % (body.length - 1)));
  }
  const at = [0, ...[...cuts].sort((a, b) => a - b), body.length];
  return at.slice(1).map((end, i) => body.subarray(at[i], end));
}

describe.each(CASES)("$file", ({ file, contentType, providers, tier }) => {
  const body = fixture(file);
  const USAGE: Usage = tier === undefined ? ALL_USAGE : { ...ALL_USAGE, serviceTier: tier };

  it.each(providers)("is metered for %s, whole and in pieces", (provider) => {
    expect(meter(provider, contentType, [body])).toEqual(USAGE);
    for (let seed = 1; seed <= 20; seed++) expect(meter(provider, contentType, splits(body, seed, 3)), `seed ${seed}`).toEqual(USAGE);
  });

  it("is metered cut at every byte, byte by byte, and in many random pieces", () => {
    const provider = providers[0]!;
    for (let cut = 1; cut < body.length; cut++) {
      expect(meter(provider, contentType, [body.subarray(0, cut), body.subarray(cut)]), `cut at ${cut}`).toEqual(USAGE);
    }
    expect(
      meter(
        provider,
        contentType,
        [...body].map((b) => Buffer.from([b])),
      ),
    ).toEqual(USAGE);
    for (let seed = 1; seed <= 200; seed++) expect(meter(provider, contentType, splits(body, seed, 2 + (seed % 9))), `seed ${seed}`).toEqual(USAGE);
  });

  it("reports no final usage for the stream cut inside the event that carries it", () => {
    // 588 (the completion count) appears only in the final usage event or array element.
    const partial = meter(providers[0]!, contentType, [body.subarray(0, body.lastIndexOf("588"))]);
    expect(partial?.totalTokens ?? 0).toBeLessThan(USAGE.totalTokens);
  });
});

describe("through the relay", () => {
  const { relay, mock } = useRelay({ allProviders: true });
  beforeEach(() => mock.reset());

  /** Streams a fixture in 9 parts cut mid-event, 2 ms apart. */
  const replay = (c: Case, seed = 7) => mock.behave(() => ({ stream: { contentType: c.contentType, parts: splits(fixture(c.file), seed, 9), delayMs: 2 } }));
  const usageOf = (tokenId: string) => relay.calls.filter((c) => c.tokenId === tokenId).map((c) => c.usage?.totalTokens ?? 0);
  const caseOf = (file: string) => CASES.find((c) => c.file === file)!;

  it("OpenAI Responses stream (openai SDK): usage from response.completed", async () => {
    replay(caseOf("openai-responses.sse"));
    const { secret, id } = await relay.issue();
    const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    let text = "";
    let completed: OpenAI.Responses.ResponseUsage | undefined;
    for await (const ev of await client.responses.create({ model: "gpt-4.1-mini", input: "hi", stream: true })) {
      if (ev.type === "response.output_text.delta") text += ev.delta;
      if (ev.type === "response.completed") completed = ev.response.usage;
    }
    expect(text).toBe(TEXT);
    expect(completed?.total_tokens).toBe(1000);
    expect(relay.calls.filter((c) => c.tokenId === id)).toMatchObject([{ usage: ALL_USAGE }]);
  });

  it("Anthropic stream (@anthropic-ai/sdk)", async () => {
    replay(caseOf("anthropic-messages.sse"));
    const { secret, id } = await relay.issue({ provider: "anthropic" });
    const client = new Anthropic({ apiKey: secret, baseURL: `${relay.url}/api/anthropic`, maxRetries: 0 });
    const final = await client.messages
      .stream({ model: "claude-sonnet-4-20250514", max_tokens: 1000, messages: [{ role: "user", content: "hi" }] })
      .finalMessage();
    expect(final.usage.output_tokens).toBe(588);
    expect(relay.calls.filter((c) => c.tokenId === id)).toMatchObject([{ usage: ALL_USAGE }]);
  });

  it("Azure chat stream (AzureOpenAI SDK) and Groq's x_groq usage", async () => {
    replay(caseOf("azure-chat.sse"));
    const azure = await relay.issue({ provider: "azure-openai" });
    const client = new AzureOpenAI({
      apiKey: azure.secret,
      baseURL: `${relay.url}/api/azure-openai`,
      apiVersion: "2024-10-21",
      deployment: "gpt-4o-mini",
      maxRetries: 0,
    });
    let text = "";
    for await (const c of await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], stream: true })) {
      text += c.choices[0]?.delta.content ?? "";
    }
    expect(text).toBe(TEXT);
    expect(usageOf(azure.id)).toEqual([1000]);

    replay(caseOf("groq-chat.sse"));
    const groq = await relay.issue({ provider: "groq" });
    const res = await fetch(`${relay.url}/api/groq/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${groq.secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "llama-3.3-70b-versatile", stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    expect(usageOf(groq.id)).toEqual([1000]);
  });

  // The issue's figures: a budget of 2,000 LLM tokens, 1,000 per call, ten calls in a row.
  const BUDGET = { budgetTokens: 2000n, maxOutputTokens: 1000 };
  const figures: string[] = [];
  afterAll(() => console.log(`[stream-usage] ${figures.join("; ")}`));

  async function tenCalls(label: string, provider: string, c: Case, send: (secret: string) => Promise<number>): Promise<void> {
    replay(c);
    const { secret, id } = await relay.issue({ provider, limits: BUDGET });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push(await send(secret));
    const metered = usageOf(id).reduce((a, b) => a + b, 0);
    figures.push(`${label}: ${mock.requests.length}/10 admitted, ${metered} metered, statuses ${statuses.join(",")}`);
    expect(mock.requests).toHaveLength(2);
    expect(metered).toBe(2000);
    expect(statuses).toEqual([200, 200, ...Array(8).fill(429)]);
    expect((await relay.tokens.getToken({ id })).token?.tokensUsed).toBe(2000n);
  }

  it("(a) streamed /v1/responses stops at the budget", async () => {
    await tenCalls("(a) Responses stream", "openai", caseOf("openai-responses.sse"), async (secret) => {
      const res = await fetch(`${relay.url}/api/openai/v1/responses`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4.1-mini", input: "hi", stream: true }),
      });
      await res.text();
      return res.status;
    });
  });

  it("(b) Gemini streamGenerateContent without alt=sse stops at the budget", async () => {
    await tenCalls("(b) Gemini JSON stream", "gemini", caseOf("gemini-array.json"), async (secret) => {
      const res = await fetch(`${relay.url}/api/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent`, {
        method: "POST",
        headers: { "x-goog-api-key": secret, "content-type": "application/json" },
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
      });
      const text = await res.text();
      if (res.status === 200) expect((JSON.parse(text) as unknown[]).length).toBe(7);
      return res.status;
    });
  });

  it("the mock's own Gemini JSON stream, sent in parts, and its Responses route are metered", async () => {
    const g = await relay.issue({ provider: "gemini" });
    const res = await fetch(`${relay.url}/api/gemini/v1beta/models/gemini-mock:streamGenerateContent`, {
      method: "POST",
      headers: { "x-goog-api-key": g.secret, "content-type": "application/json", "x-mock-chunks": "4", "x-mock-delay-ms": "2" },
      body: JSON.stringify({ contents: [] }),
    });
    expect((JSON.parse(await res.text()) as unknown[]).length).toBe(4);
    expect(usageOf(g.id)).toEqual([14]);
    const o = await relay.issue();
    const client = new OpenAI({ apiKey: o.secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    const whole = await client.responses.create({ model: "gpt-mock", input: "hi" });
    expect(whole.usage?.total_tokens).toBe(15);
    for await (const ev of await client.responses.create({ model: "gpt-mock", input: "hi", stream: true })) void ev;
    expect(usageOf(o.id)).toEqual([15, 15]);
  });
});
