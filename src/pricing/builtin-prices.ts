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
 * Simplifications, said here once: long-context tiers (Gemini 2.5 Pro above 200k prompt tokens,
 * Claude Sonnet 4/4.5 with a 1M context) are priced at the base tier; Anthropic cache writes at the
 * 5-minute rate; cached audio at the cached-input price; Gemini's context-cache storage per hour
 * and per-call fees (web search) are not counted. whisper-1 and the TTS models are billed per
 * minute or per character, not per token: unpriced.
 */
import type { ModelPrice } from "./types.js";

/** The day the shipped prices were read from the providers' price pages. */
export const BUILTIN_PRICES_AS_OF = "2025-11-24";

/** Dollars per million tokens, written as the price pages show them, to micro-dollars: exact for up to 6 decimals. */
function usd(dollars: number): number {
  return Math.round(dollars * 1_000_000);
}

interface Per {
  input: number;
  cached?: number;
  cacheWrite?: number;
  output: number;
  audioIn?: number;
  audioOut?: number;
}

function price(p: Per): ModelPrice {
  const m: ModelPrice = { input: usd(p.input), output: usd(p.output) };
  if (p.cached !== undefined) m.cachedInput = usd(p.cached);
  if (p.cacheWrite !== undefined) m.cacheWrite = usd(p.cacheWrite);
  if (p.audioIn !== undefined) m.audioInput = usd(p.audioIn);
  if (p.audioOut !== undefined) m.audioOutput = usd(p.audioOut);
  return m;
}

/** The same price under several names (an alias and its dated snapshots). */
function names(list: string[], p: Per): [string, ModelPrice][] {
  const m = price(p);
  return list.map((n) => [n, m]);
}

// https://openai.com/api/pricing (standard tier). Reasoning tokens are output tokens.
const OPENAI: [string, ModelPrice][] = [
  ...names(["gpt-5", "gpt-5-2025-*", "gpt-5-chat-latest"], { input: 1.25, cached: 0.125, output: 10 }),
  ...names(["gpt-5-mini", "gpt-5-mini-2025-*"], { input: 0.25, cached: 0.025, output: 2 }),
  ...names(["gpt-5-nano", "gpt-5-nano-2025-*"], { input: 0.05, cached: 0.005, output: 0.4 }),
  ...names(["gpt-4.1", "gpt-4.1-2025-*"], { input: 2, cached: 0.5, output: 8 }),
  ...names(["gpt-4.1-mini", "gpt-4.1-mini-2025-*"], { input: 0.4, cached: 0.1, output: 1.6 }),
  ...names(["gpt-4.1-nano", "gpt-4.1-nano-2025-*"], { input: 0.1, cached: 0.025, output: 0.4 }),
  ...names(["gpt-4o", "gpt-4o-2024-*", "chatgpt-4o-latest"], { input: 2.5, cached: 1.25, output: 10 }),
  // The first gpt-4o snapshot kept its launch price.
  ...names(["gpt-4o-2024-05-13"], { input: 5, output: 15 }),
  ...names(["gpt-4o-mini", "gpt-4o-mini-2024-*"], { input: 0.15, cached: 0.075, output: 0.6 }),
  ...names(["o3", "o3-2025-*"], { input: 2, cached: 0.5, output: 8 }),
  ...names(["o3-mini", "o3-mini-2025-*"], { input: 1.1, cached: 0.55, output: 4.4 }),
  ...names(["o4-mini", "o4-mini-2025-*"], { input: 1.1, cached: 0.275, output: 4.4 }),
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
const ANTHROPIC: [string, ModelPrice][] = [
  ...names(["claude-opus-4-5*"], { input: 5, cacheWrite: 6.25, cached: 0.5, output: 25 }),
  ...names(["claude-opus-4-1*", "claude-opus-4-0", "claude-opus-4-2025*", "claude-3-opus*"], {
    input: 15,
    cacheWrite: 18.75,
    cached: 1.5,
    output: 75,
  }),
  ...names(["claude-sonnet-4-5*", "claude-sonnet-4-0", "claude-sonnet-4-2025*", "claude-3-7-sonnet*", "claude-3-5-sonnet*"], {
    input: 3,
    cacheWrite: 3.75,
    cached: 0.3,
    output: 15,
  }),
  ...names(["claude-haiku-4-5*"], { input: 1, cacheWrite: 1.25, cached: 0.1, output: 5 }),
  ...names(["claude-3-5-haiku*"], { input: 0.8, cacheWrite: 1, cached: 0.08, output: 4 }),
  ...names(["claude-3-haiku*"], { input: 0.25, cacheWrite: 0.3, cached: 0.03, output: 1.25 }),
];

// https://ai.google.dev/gemini-api/docs/pricing (paid tier, prompts up to 200k tokens).
// Thinking tokens are output tokens; audio input has its own price.
const GEMINI: [string, ModelPrice][] = [
  ...names(["gemini-3-pro-preview", "gemini-3-pro-preview-*"], { input: 2, cached: 0.2, output: 12 }),
  ...names(["gemini-2.5-pro", "gemini-2.5-pro-preview-*"], { input: 1.25, cached: 0.125, output: 10 }),
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
