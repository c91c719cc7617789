/**
 * Prices and costs (issue 24, item 5): micro-dollars computed by hand for each shape's usage as
 * its meter reads it (OpenAI chat and Responses with cached, reasoning and audio tokens;
 * Anthropic with cache writes and reads; Gemini with cached content and thoughts), the one
 * half-up rounding per call, the shipped table's model matching (exact, then the longest
 * `prefix*`), and the admin's overrides: their precedence, validation, and their arrival on a
 * second instance within a second (PostgreSQL, when it answers).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { BUILTIN_PRICES, BUILTIN_PRICES_AS_OF } from "../src/pricing/builtin-prices.js";
import { costOf, maxCostOf } from "../src/pricing/cost.js";
import { callCost, PriceBook } from "../src/pricing/price-book.js";
import type { ModelPrice } from "../src/pricing/types.js";
import { anthropicShape, geminiShape, openaiShape } from "../src/providers/shapes/index.js";
import type { ApiShape, Usage } from "../src/providers/types.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./support/databases.js";
import { waitFor } from "./support/wait.js";

/** What a shape's meter reads from a whole JSON answer. */
function metered(shape: ApiShape, body: unknown): Usage {
  const m = shape.meter("application/json");
  m.feed(Buffer.from(JSON.stringify(body)));
  const u = m.result();
  if (u === undefined) throw new Error("no usage read");
  return u;
}

/** What a shape's meter reads from an SSE stream of these events. */
function meteredStream(shape: ApiShape, events: unknown[]): Usage {
  const m = shape.meter("text/event-stream");
  for (const e of events) m.feed(Buffer.from(`data: ${JSON.stringify(e)}\n\n`));
  const u = m.result();
  if (u === undefined) throw new Error("no usage read");
  return u;
}

const builtin = (provider: string, model: string): ModelPrice => {
  const p = BUILTIN_PRICES.get(provider)?.get(model);
  if (p === undefined) throw new Error(`no shipped price for ${provider} ${model}`);
  return p;
};

describe("costs from each shape's reported usage (hand-computed)", () => {
  it("OpenAI chat: cached tokens at the cached price, reasoning tokens at the output price", () => {
    const usage = metered(openaiShape, {
      service_tier: "default",
      usage: {
        prompt_tokens: 12_000,
        completion_tokens: 1_500,
        total_tokens: 13_500,
        prompt_tokens_details: { cached_tokens: 4_000, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 300, audio_tokens: 0 },
      },
    });
    expect(usage).toEqual({
      promptTokens: 12_000,
      completionTokens: 1_500,
      totalTokens: 13_500,
      cachedTokens: 4_000,
      reasoningTokens: 300,
      serviceTier: "default",
    });
    // gpt-4o: $2.50 in, $1.25 cached, $10 out per million: 8000 x 2.5 + 4000 x 1.25 + 1500 x 10 micro-dollars.
    expect(costOf(builtin("openai", "gpt-4o"), usage)).toBe(20_000 + 5_000 + 15_000);
  });

  it("OpenAI Responses API: input_tokens_details and output_tokens_details", () => {
    const usage = meteredStream(openaiShape, [
      {
        type: "response.completed",
        response: {
          service_tier: "default",
          usage: {
            input_tokens: 3_000,
            input_tokens_details: { cached_tokens: 1_024 },
            output_tokens: 900,
            output_tokens_details: { reasoning_tokens: 640 },
            total_tokens: 3_900,
          },
        },
      },
    ]);
    expect(usage).toMatchObject({ promptTokens: 3_000, cachedTokens: 1_024, completionTokens: 900, reasoningTokens: 640 });
    // o4-mini: $1.10 in, $0.275 cached, $4.40 out: 1976 x 1.1 + 1024 x 0.275 + 900 x 4.4 = 2173.6 + 281.6 + 3960 = 6415.2
    expect(costOf(builtin("openai", "o4-mini"), usage)).toBe(6_415);
  });

  it("OpenAI audio: audio tokens at the audio prices, the rest of each side at the text prices", () => {
    const usage = metered(openaiShape, {
      usage: {
        prompt_tokens: 1_000,
        completion_tokens: 500,
        total_tokens: 1_500,
        prompt_tokens_details: { cached_tokens: 200, audio_tokens: 600 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 400 },
      },
    });
    expect(usage).toMatchObject({ audioInputTokens: 600, audioOutputTokens: 400, cachedTokens: 200 });
    // gpt-realtime: text $4 in, $0.40 cached, $16 out, audio $32 in, $64 out:
    // 200 x 4 + 200 x 0.4 + 600 x 32 + 100 x 16 + 400 x 64
    expect(costOf(builtin("openai", "gpt-realtime"), usage)).toBe(800 + 80 + 19_200 + 1_600 + 25_600);
  });

  it("Anthropic: input_tokens excludes the cache's writes and reads, each at its own price (whole and streamed)", () => {
    const reported = { input_tokens: 2_000, cache_creation_input_tokens: 10_000, cache_read_input_tokens: 50_000, output_tokens: 800 };
    const whole = metered(anthropicShape, { type: "message", usage: reported });
    const streamed = meteredStream(anthropicShape, [
      { type: "message_start", message: { usage: { ...reported, output_tokens: 1 } } },
      { type: "message_delta", usage: { output_tokens: 800 } },
    ]);
    const want = { promptTokens: 62_000, completionTokens: 800, totalTokens: 62_800, cachedTokens: 50_000, cacheWriteTokens: 10_000 };
    expect(whole).toEqual(want);
    expect(streamed).toEqual(want);
    // claude-sonnet-4-20250514: $3 in, $3.75 cache write, $0.30 cache read, $15 out:
    // 2000 x 3 + 10000 x 3.75 + 50000 x 0.3 + 800 x 15
    const price = new PriceBook(undefined as never).priceOf("anthropic", "claude-sonnet-4-20250514")!;
    expect(costOf(price, whole)).toBe(6_000 + 37_500 + 15_000 + 12_000);
  });

  it("Gemini: promptTokenCount includes the cached tokens; thoughts are output but not in candidatesTokenCount", () => {
    const usage = metered(geminiShape, {
      usageMetadata: {
        promptTokenCount: 20_000,
        cachedContentTokenCount: 8_000,
        candidatesTokenCount: 1_000,
        thoughtsTokenCount: 3_000,
        totalTokenCount: 24_000,
      },
    });
    expect(usage).toEqual({ promptTokens: 20_000, completionTokens: 4_000, totalTokens: 24_000, cachedTokens: 8_000, reasoningTokens: 3_000 });
    // gemini-2.5-flash: $0.30 in, $0.03 cached, $2.50 out: 12000 x 0.3 + 8000 x 0.03 + 4000 x 2.5
    expect(costOf(builtin("gemini", "gemini-2.5-flash"), usage)).toBe(3_600 + 240 + 10_000);
  });

  it("Gemini audio input by modality", () => {
    const usage = metered(geminiShape, {
      usageMetadata: {
        promptTokenCount: 5_000,
        candidatesTokenCount: 100,
        totalTokenCount: 5_100,
        promptTokensDetails: [
          { modality: "TEXT", tokenCount: 1_000 },
          { modality: "AUDIO", tokenCount: 4_000 },
        ],
      },
    });
    expect(usage.audioInputTokens).toBe(4_000);
    // gemini-2.0-flash: $0.10 text in, $0.70 audio in, $0.40 out: 1000 x 0.1 + 4000 x 0.7 + 100 x 0.4
    expect(costOf(builtin("gemini", "gemini-2.0-flash"), usage)).toBe(100 + 2_800 + 40);
  });
});

describe("the arithmetic", () => {
  const cents = (input: number, output: number): ModelPrice => ({ input, output });

  it("rounds half up once per call, on the exact sum", () => {
    const u = (p: number, c: number): Usage => ({ promptTokens: p, completionTokens: c, totalTokens: p + c });
    expect(costOf(cents(500_000, 0), u(1, 0))).toBe(1); // 0.5 -> 1
    expect(costOf(cents(499_999, 0), u(1, 0))).toBe(0); // 0.499999 -> 0
    // 0.4 + 0.4 = 0.8 -> 1: rounding each part would say 0.
    expect(costOf(cents(400_000, 400_000), u(1, 1))).toBe(1);
    // 10M tokens at $1,000,000 per million: exact past 2^53 of intermediate units.
    expect(costOf(cents(1_000_000_000_000, 0), u(10_000_000, 0))).toBe(10_000_000_000_000);
    expect(costOf(cents(3, 7), u(333_333, 142_857))).toBe(Math.round((333_333 * 3 + 142_857 * 7) / 1e6));
  });

  it("caps a part to its side: a cached count above the prompt never makes the rest negative", () => {
    const price: ModelPrice = { input: 2_000_000, cachedInput: 1_000_000, output: 0 };
    expect(costOf(price, { promptTokens: 100, completionTokens: 0, totalTokens: 100, cachedTokens: 500 })).toBe(100);
    // and the meter flags such a report
    const flagged = metered(openaiShape, { usage: { prompt_tokens: 10, completion_tokens: 0, prompt_tokens_details: { cached_tokens: 50 } } });
    expect(flagged).toMatchObject({ cachedTokens: 10, flags: 1 });
  });

  it("maxCostOf rounds up and takes each side at its dearest price", () => {
    // gpt-4o's tier is known only from its answer: reserved at priority ($4.25 in, $17 out).
    expect(maxCostOf(builtin("openai", "gpt-4o"), 1_000, 500)).toBe(4_250 + 8_500);
    expect(maxCostOf(builtin("openai", "gpt-5-nano"), 1_000, 500)).toBe(50 + 200);
    expect(maxCostOf(cents(400_000, 0), 1, 0)).toBe(1);
    // Anthropic: a prompt may be all cache writes ($3.75 > $3).
    expect(maxCostOf(builtin("anthropic", "claude-sonnet-4-5*"), 1_000, 0)).toBe(3_750);
    // Audio output at $80 rather than $20 text.
    expect(maxCostOf(builtin("openai", "gpt-4o-realtime-preview"), 0, 1_000)).toBe(80_000);
  });

  it("callCost: unpriced is undefined, nothing metered is 0", () => {
    const book = new PriceBook(undefined as never);
    const usage: Usage = { promptTokens: 1_000, completionTokens: 0, totalTokens: 1_000, serviceTier: "default" };
    expect(callCost(book, "openai", "gpt-4o-mini", usage)).toBe(150);
    expect(callCost(book, "openai", "whisper-1", usage)).toBeUndefined();
    expect(callCost(book, "openai", undefined, undefined)).toBe(0);
    expect(callCost(book, "openai", "gpt-4o-mini", undefined)).toBe(0);
  });
});

describe("the shipped table", () => {
  const book = new PriceBook(undefined as never);

  it("is dated and holds sane integer prices", () => {
    expect(BUILTIN_PRICES_AS_OF).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    for (const [provider, models] of BUILTIN_PRICES) {
      for (const [model, p] of models) {
        const all = [p.input, p.output, p.cachedInput, p.cacheWrite, p.audioInput, p.audioOutput].filter((v) => v !== undefined);
        for (const v of all) expect(Number.isSafeInteger(v) && v >= 0, `${provider} ${model}`).toBe(true);
        if (p.cachedInput !== undefined) expect(p.cachedInput, `${provider} ${model} cached <= input`).toBeLessThanOrEqual(p.input);
        // A tier is never cheaper than the base, part by part (a tier prices every part it bills).
        for (const tier of [p.priority, p.longContext]) {
          if (tier === undefined) continue;
          expect(tier.input, `${provider} ${model} tier input`).toBeGreaterThanOrEqual(p.input);
          expect(tier.output, `${provider} ${model} tier output`).toBeGreaterThanOrEqual(p.output);
          if (p.cachedInput !== undefined) expect(tier.cachedInput, `${provider} ${model} tier cached`).toBeGreaterThanOrEqual(p.cachedInput);
          if (p.cacheWrite !== undefined) expect(tier.cacheWrite, `${provider} ${model} tier cache write`).toBeGreaterThanOrEqual(p.cacheWrite);
        }
      }
    }
  });

  it("matches exact names first, then the longest prefix; other variants stay unpriced", () => {
    expect(book.priceOf("openai", "gpt-4o")).toEqual({
      input: 2_500_000,
      cachedInput: 1_250_000,
      output: 10_000_000,
      priority: { input: 4_250_000, cachedInput: 2_125_000, output: 17_000_000 },
    });
    expect(book.priceOf("openai", "gpt-4o-2024-08-06")).toEqual(book.priceOf("openai", "gpt-4o"));
    // The first snapshot's own (exact) price beats the `gpt-4o-2024-*` prefix.
    expect(book.priceOf("openai", "gpt-4o-2024-05-13")).toMatchObject({ input: 5_000_000, output: 15_000_000 });
    expect(book.priceOf("openai", "gpt-4o-mini-2024-07-18")?.input).toBe(150_000);
    expect(book.priceOf("openai", "gpt-4o-transcribe")).toBeUndefined();
    expect(book.priceOf("openai", "whisper-1")).toBeUndefined();
    // Longest prefix: claude-opus-4-5* over claude-opus-4-2025*'s family.
    expect(book.priceOf("anthropic", "claude-opus-4-5-20251101")?.input).toBe(5_000_000);
    expect(book.priceOf("anthropic", "claude-opus-4-1-20250805")?.input).toBe(15_000_000);
    expect(book.priceOf("anthropic", "claude-3-5-haiku-20241022")?.output).toBe(4_000_000);
    expect(book.priceOf("gemini", "gemini-2.5-flash-lite")?.input).toBe(100_000);
    expect(book.priceOf("gemini", "gemini-2.5-flash-preview-05-20")?.input).toBe(300_000);
    expect(book.priceOf("gemini", "gemini-2.5-flash-preview-tts")).toBeUndefined();
    expect(book.priceOf("gemini", "gemini-2.0-flash-001")?.input).toBe(100_000);
    // Per provider: the same name on another provider is not priced by this table.
    expect(book.priceOf("openrouter", "gpt-4o")).toBeUndefined();
    expect(book.priceOf("openai", undefined)).toBeUndefined();
  });
});

describe("admin overrides (PGlite)", () => {
  let database: Database;
  let dir: string;
  let book: PriceBook;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "relayapi-prices-"));
    database = await openDatabase({ dataDir: dir });
    await migrateDatabase(database);
    book = new PriceBook(database.db);
    await book.start(0);
  }, 60_000);
  afterAll(async () => {
    book?.stop();
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an admin's prefix reprices even a shipped exact name; an admin's exact name beats its prefix; delete restores", async () => {
    await book.set("openai", "gpt-4o*", { input: 1_000_000, output: 2_000_000 });
    // The shipped priority tier of each model stays, scaled to the admin's base (gpt-4o: 1.7x).
    expect(book.priceOf("openai", "gpt-4o")).toEqual({
      input: 1_000_000,
      output: 2_000_000,
      priority: { input: 1_700_000, cachedInput: 1_700_000, output: 3_400_000 },
    });
    expect(book.priceOf("openai", "gpt-4o-mini")).toMatchObject({ input: 1_000_000, output: 2_000_000 });
    await book.set("openai", "gpt-4o-mini", { input: 7, cachedInput: 3, output: 9 });
    // gpt-4o-mini's priority is $0.25 / $0.125 / $1 over $0.15 / $0.075 / $0.60: scaled and rounded up.
    expect(book.priceOf("openai", "gpt-4o-mini")).toEqual({ input: 7, cachedInput: 3, output: 9, priority: { input: 12, cachedInput: 5, output: 15 } });
    const listed = book.list("openai").filter((p) => p.model === "gpt-4o-mini" || p.model === "gpt-4o-mini-2024-*");
    expect(listed.map((p) => [p.model, p.source])).toEqual([
      ["gpt-4o-mini", "admin"],
      ["gpt-4o-mini-2024-*", "builtin"],
    ]);
    expect(listed[0]!.asOf).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(await book.delete("openai", "gpt-4o-mini")).toBe(true);
    expect(await book.delete("openai", "gpt-4o*")).toBe(true);
    expect(await book.delete("openai", "gpt-4o*")).toBe(false);
    expect(book.priceOf("openai", "gpt-4o-mini")?.input).toBe(150_000);
    // A provider without a shipped table gets one model, or every model (`*`).
    await book.set("ollama", "*", { input: 0, output: 0 });
    expect(book.priceOf("ollama", "llama3.2")).toEqual({ input: 0, output: 0 });
  });

  it("refuses a bad model pattern or price", async () => {
    await expect(book.set("openai", "gpt*4o*", { input: 1, output: 1 })).rejects.toThrow(/model must be/);
    await expect(book.set("openai", "", { input: 1, output: 1 })).rejects.toThrow(/model must be/);
    await expect(book.set("openai", "m\u0000", { input: 1, output: 1 })).rejects.toThrow(/model must be/);
    await expect(book.set("openai", "m", { input: -1, output: 1 })).rejects.toThrow(/input must be/);
    await expect(book.set("openai", "m", { input: 1, output: 0.5 })).rejects.toThrow(/output must be/);
    await expect(book.set("openai", "m", { input: 1, output: 1, cacheWrite: 1e13 })).rejects.toThrow(/cache_write must be/);
  });
});

const pg = await postgresAvailable();

describe.runIf(pg)("two instances on one PostgreSQL", () => {
  let db: TestDatabase;
  let a: Database;
  let b: Database;
  const books: PriceBook[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    a = await openDatabase({ dataDir: "", databaseUrl: db.url });
    await migrateDatabase(a);
    b = await openDatabase({ dataDir: "", databaseUrl: db.url });
  }, 60_000);
  afterAll(async () => {
    for (const book of books) book.stop();
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  it("a price set on one reaches the other within a second", async () => {
    const one = new PriceBook(a.db);
    const other = new PriceBook(b.db);
    books.push(one, other);
    await one.start(1000);
    await other.start(1000);
    const set = Date.now();
    await one.set("anthropic", "claude-sonnet-4-5*", { input: 4_000_000, output: 20_000_000 });
    await waitFor(() => other.priceOf("anthropic", "claude-sonnet-4-5-20250929")?.input === 4_000_000, 3_000, "the new price on the other instance", 20);
    expect(Date.now() - set).toBeLessThan(1_500);
  });
});
