/**
 * The price table shipped with the relay (issue 24): the built-in providers' common models, in
 * micro-dollars per million tokens (so `2_500_000` is $2.50 per million). Read from the
 * providers' public price pages as of BUILTIN_PRICES_AS_OF; an admin's `relayapi price set`
 * overrides any entry (src/pricing/price-book.ts), and a model not listed here is unpriced
 * (its calls are recorded with cost unknown).
 *
 * A model ending in `*` matches every name it is a prefix of; an exact name wins, then the
 * longest prefix. Prefixes are kept to dated snapshots (`gpt-4o-2024-*`) rather than whole
 * families (`gpt-4o*`), so a differently priced variant of the same family (`gpt-4o-transcribe`,
 * `gemini-2.5-flash-preview-tts`) stays unpriced instead of being priced wrong.
 *
 * Tiers billed above the base price are listed too (src/pricing/tiers.ts): OpenAI's priority
 * processing, and the long-context tiers of Gemini 2.5 Pro and 3 Pro (above 200k prompt tokens)
 * and Claude Sonnet 4/4.5 (above 200k input tokens, with the 1M context).
 *
 * Simplifications, said here once: Anthropic cache writes at the 5-minute rate; cached audio at
 * the cached-input price; Gemini's context-cache storage per hour and per-call fees (web search)
 * are not counted; Anthropic's Priority Tier is bought as committed capacity and has no public
 * per-token price, so its answers are billed at the standard prices here. whisper-1 and the TTS
 * models are billed per minute or per character, not per token: unpriced.
 */
import type { ModelPrice, PartPrices } from "./types.js";

/** The day the shipped prices were read from the providers' price pages. */
export const BUILTIN_PRICES_AS_OF = "2025-11-24";

/** Dollars per million tokens, written as the price pages show them, to micro-dollars: exact for up to 6 decimals. */
function usd(dollars: number): number {
  return Math.round(dollars * 1_000_000);
}

interface Parts {
  input: number;
  cached?: number;
  cacheWrite?: number;
  output: number;
  audioIn?: number;
  audioOut?: number;
}

interface Per extends Parts {
  /** The priority tier's prices. */
  priority?: Parts;
  /** Prices of every token of a call whose prompt is longer than `above` tokens. */
  longContext?: Parts & { above: number };
}

function parts(p: Parts): PartPrices {
  const m: PartPrices = { input: usd(p.input), output: usd(p.output) };
  if (p.cached !== undefined) m.cachedInput = usd(p.cached);
  if (p.cacheWrite !== undefined) m.cacheWrite = usd(p.cacheWrite);
  if (p.audioIn !== undefined) m.audioInput = usd(p.audioIn);
  if (p.audioOut !== undefined) m.audioOutput = usd(p.audioOut);
  return m;
}

function price(p: Per): ModelPrice {
  const m: ModelPrice = parts(p);
  if (p.priority !== undefined) m.priority = parts(p.priority);
  if (p.longContext !== undefined) m.longContext = { ...parts(p.longContext), above: p.longContext.above };
  return m;
}

/** The same price under several names (an alias and its dated snapshots). */
function names(list: string[], p: Per): [string, ModelPrice][] {
  const m = price(p);
  return list.map((n) => [n, m]);
}

// https://openai.com/api/pricing (standard tier). Reasoning tokens are output tokens.
// `priority`: the Priority tab of https://platform.openai.com/docs/pricing (priority processing,
// https://platform.openai.com/docs/guides/priority-processing), 1.7x to 2x the standard prices:
// gpt-5 and gpt-4.1-nano 2x, gpt-5-mini 1.8x, o4-mini 1.82x, gpt-4.1 and o3 1.75x, gpt-4o 1.7x,
// gpt-4o-mini 1.67x. The models the tab does not list are not served at priority (their answers
// report the tier that served them). `chatgpt-4o-latest` has no priority row: it keeps gpt-4o's,
// which can only overcount.
const OPENAI: [string, ModelPrice][] = [
  ...names(["gpt-5", "gpt-5-2025-*", "gpt-5-chat-latest"], {
    input: 1.25,
    cached: 0.125,
    output: 10,
    priority: { input: 2.5, cached: 0.25, output: 20 },
  }),
  ...names(["gpt-5-mini", "gpt-5-mini-2025-*"], { input: 0.25, cached: 0.025, output: 2, priority: { input: 0.45, cached: 0.045, output: 3.6 } }),
  ...names(["gpt-5-nano", "gpt-5-nano-2025-*"], { input: 0.05, cached: 0.005, output: 0.4 }),
  ...names(["gpt-4.1", "gpt-4.1-2025-*"], { input: 2, cached: 0.5, output: 8, priority: { input: 3.5, cached: 0.875, output: 14 } }),
  ...names(["gpt-4.1-mini", "gpt-4.1-mini-2025-*"], { input: 0.4, cached: 0.1, output: 1.6, priority: { input: 0.7, cached: 0.175, output: 2.8 } }),
  ...names(["gpt-4.1-nano", "gpt-4.1-nano-2025-*"], { input: 0.1, cached: 0.025, output: 0.4, priority: { input: 0.2, cached: 0.05, output: 0.8 } }),
  ...names(["gpt-4o", "gpt-4o-2024-*", "chatgpt-4o-latest"], {
    input: 2.5,
    cached: 1.25,
    output: 10,
    priority: { input: 4.25, cached: 2.125, output: 17 },
  }),
  // The first gpt-4o snapshot kept its launch price.
  ...names(["gpt-4o-2024-05-13"], { input: 5, output: 15, priority: { input: 8.75, output: 26.25 } }),
  ...names(["gpt-4o-mini", "gpt-4o-mini-2024-*"], { input: 0.15, cached: 0.075, output: 0.6, priority: { input: 0.25, cached: 0.125, output: 1 } }),
  ...names(["o3", "o3-2025-*"], { input: 2, cached: 0.5, output: 8, priority: { input: 3.5, cached: 0.875, output: 14 } }),
  ...names(["o3-mini", "o3-mini-2025-*"], { input: 1.1, cached: 0.55, output: 4.4 }),
  ...names(["o4-mini", "o4-mini-2025-*"], { input: 1.1, cached: 0.275, output: 4.4, priority: { input: 2, cached: 0.5, output: 8 } }),
  ...names(["o1", "o1-2024-*"], { input: 15, cached: 7.5, output: 60 }),
  // Realtime and audio models: text and audio tokens at their own prices.
  ...names(["gpt-realtime", "gpt-realtime-2025-*"], { input: 4, cached: 0.4, output: 16, audioIn: 32, audioOut: 64 }),
  ...names(["gpt-4o-realtime-preview", "gpt-4o-realtime-preview-2024-12-17", "gpt-4o-realtime-preview-2025-*"], {
    input: 5,
    cached: 2.5,
    output: 20,
    audioIn: 40,
    audioOut: 80,
  }),
  ...names(["gpt-4o-realtime-preview-2024-10-01"], { input: 5, cached: 2.5, output: 20, audioIn: 100, audioOut: 200 }),
  ...names(["gpt-4o-mini-realtime-preview", "gpt-4o-mini-realtime-preview-2024-12-17"], {
    input: 0.6,
    cached: 0.3,
    output: 2.4,
    audioIn: 10,
    audioOut: 20,
  }),
  ...names(["gpt-4o-audio-preview", "gpt-4o-audio-preview-2024-12-17", "gpt-4o-audio-preview-2025-*"], {
    input: 2.5,
    output: 10,
    audioIn: 40,
    audioOut: 80,
  }),
  ...names(["gpt-4o-mini-audio-preview", "gpt-4o-mini-audio-preview-2024-12-17"], { input: 0.15, output: 0.6, audioIn: 10, audioOut: 20 }),
  ...names(["text-embedding-3-small"], { input: 0.02, output: 0 }),
  ...names(["text-embedding-3-large"], { input: 0.13, output: 0 }),
  ...names(["text-embedding-ada-002"], { input: 0.1, output: 0 }),
];

// https://www.anthropic.com/pricing#api: cache writes at the 5-minute rate (1.25 x input), reads 0.1 x.
// Sonnet 4 and 4.5 with the 1M context window (https://docs.claude.com/en/docs/build-with-claude/context-windows):
// a request above 200k input tokens (cache reads and writes included) is billed $6 in, $7.50
// cache write, $0.60 cache read, $22.50 out, every token of it. Without the 1M beta a prompt
// cannot pass 200k, so the tier applies exactly to the calls the answer shows above it.
const ANTHROPIC: [string, ModelPrice][] = [
  ...names(["claude-opus-4-5*"], { input: 5, cacheWrite: 6.25, cached: 0.5, output: 25 }),
  ...names(["claude-opus-4-1*", "claude-opus-4-0", "claude-opus-4-2025*", "claude-3-opus*"], {
    input: 15,
    cacheWrite: 18.75,
    cached: 1.5,
    output: 75,
  }),
  ...names(["claude-sonnet-4-5*", "claude-sonnet-4-0", "claude-sonnet-4-2025*"], {
    input: 3,
    cacheWrite: 3.75,
    cached: 0.3,
    output: 15,
    longContext: { above: 200_000, input: 6, cacheWrite: 7.5, cached: 0.6, output: 22.5 },
  }),
  ...names(["claude-3-7-sonnet*", "claude-3-5-sonnet*"], { input: 3, cacheWrite: 3.75, cached: 0.3, output: 15 }),
  ...names(["claude-haiku-4-5*"], { input: 1, cacheWrite: 1.25, cached: 0.1, output: 5 }),
  ...names(["claude-3-5-haiku*"], { input: 0.8, cacheWrite: 1, cached: 0.08, output: 4 }),
  ...names(["claude-3-haiku*"], { input: 0.25, cacheWrite: 0.3, cached: 0.03, output: 1.25 }),
];

// https://ai.google.dev/gemini-api/docs/pricing (paid tier). Thinking tokens are output tokens;
// audio input has its own price. 3 Pro and 2.5 Pro bill a prompt above 200k tokens (cached
// content included) at their long-context prices, every token of the call.
const GEMINI: [string, ModelPrice][] = [
  ...names(["gemini-3-pro-preview", "gemini-3-pro-preview-*"], {
    input: 2,
    cached: 0.2,
    output: 12,
    longContext: { above: 200_000, input: 4, cached: 0.4, output: 18 },
  }),
  ...names(["gemini-2.5-pro", "gemini-2.5-pro-preview-*"], {
    input: 1.25,
    cached: 0.125,
    output: 10,
    longContext: { above: 200_000, input: 2.5, cached: 0.25, output: 15 },
  }),
  ...names(["gemini-2.5-flash", "gemini-2.5-flash-preview-0*", "gemini-2.5-flash-preview-09-2025"], {
    input: 0.3,
    cached: 0.03,
    output: 2.5,
    audioIn: 1,
  }),
  ...names(["gemini-2.5-flash-lite", "gemini-2.5-flash-lite-preview-0*", "gemini-2.5-flash-lite-preview-09-2025"], {
    input: 0.1,
    cached: 0.01,
    output: 0.4,
    audioIn: 0.3,
  }),
  ...names(["gemini-2.0-flash", "gemini-2.0-flash-0*"], { input: 0.1, cached: 0.025, output: 0.4, audioIn: 0.7 }),
  ...names(["gemini-2.0-flash-lite", "gemini-2.0-flash-lite-0*"], { input: 0.075, output: 0.3 }),
];

/** Provider id -> model (or `prefix*`) -> price. */
export const BUILTIN_PRICES: ReadonlyMap<string, ReadonlyMap<string, ModelPrice>> = new Map([
  ["openai", new Map(OPENAI)],
  ["anthropic", new Map(ANTHROPIC)],
  ["gemini", new Map(GEMINI)],
]);
