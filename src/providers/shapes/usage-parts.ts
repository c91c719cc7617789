/**
 * Where each shape reports the parts of its usage that prices tell apart (issue 24): cached
 * prompt tokens, cache writes, reasoning tokens, audio tokens. Each reader returns the parts
 * unchecked (usageOf checks them) and says nothing of the totals, which its shape reads.
 *
 * What the totals include, per shape, so that every Usage means the same (src/pricing/cost.ts):
 * - OpenAI: `prompt_tokens` (`input_tokens`) includes the cached and audio tokens;
 *   `completion_tokens` (`output_tokens`) includes the reasoning and audio tokens. As reported.
 * - Anthropic: `input_tokens` excludes `cache_creation_input_tokens` and
 *   `cache_read_input_tokens`; the shape's promptTokens adds them (as before issue 24), so the
 *   prompt is every input token, billed at three prices. Reasoning (extended thinking) is in
 *   `output_tokens`, not reported apart.
 * - Gemini: `promptTokenCount` includes `cachedContentTokenCount`; `thoughtsTokenCount` is billed
 *   as output but is NOT in `candidatesTokenCount`, so completionTokens is their sum (the total
 *   already counts both).
 *
 * The service tier that served the call (priced apart: src/pricing/tiers.ts) is OpenAI's
 * top-level `service_tier` (a Responses stream's `response.service_tier`) and Anthropic's
 * `usage.service_tier` (on `message_start`; a `message_delta` keeps it). Gemini names none.
 */
import type { Usage } from "../types.js";
import { isObject, type UsageParts } from "./usage-meter.js";

const obj = (v: unknown): Record<string, unknown> => (isObject(v) ? v : {});

/**
 * OpenAI chat and completions (`prompt_tokens_details`, `completion_tokens_details`), the
 * Responses API (`input_tokens_details`, `output_tokens_details`) and Realtime's
 * `response.done` (`input_token_details`, `output_token_details`).
 */
export function openaiParts(u: Record<string, unknown>): UsageParts {
  const input = obj(u.prompt_tokens_details ?? u.input_tokens_details ?? u.input_token_details);
  const output = obj(u.completion_tokens_details ?? u.output_tokens_details ?? u.output_token_details);
  return { cached: input.cached_tokens, audioIn: input.audio_tokens, reasoning: output.reasoning_tokens, audioOut: output.audio_tokens };
}

/**
 * Anthropic's cache counts, from `message_start` (or a whole answer); a `message_delta` that
 * does not repeat them keeps those already seen.
 */
export function anthropicParts(u: Record<string, unknown>, seen: { cachedTokens?: number; cacheWriteTokens?: number } | undefined): UsageParts {
  return {
    cached: u.cache_read_input_tokens ?? seen?.cachedTokens,
    cacheWrite: u.cache_creation_input_tokens ?? seen?.cacheWriteTokens,
  };
}

/** Gemini's `usageMetadata`: cached content, thoughts, and audio by modality. */
export function geminiParts(u: Record<string, unknown>): UsageParts {
  return {
    cached: u.cachedContentTokenCount,
    reasoning: u.thoughtsTokenCount,
    audioIn: audioCount(u.promptTokensDetails),
    audioOut: audioCount(u.candidatesTokensDetails),
  };
}

/** Gemini's completion as billed: candidates plus thoughts. A bad count is handed on as is, for usageOf to clamp and flag. */
export function geminiCompletion(u: Record<string, unknown>): unknown {
  const candidates = u.candidatesTokenCount;
  const thoughts = u.thoughtsTokenCount;
  if (thoughts === undefined || thoughts === null) return candidates;
  if (typeof thoughts !== "number" || !Number.isSafeInteger(thoughts) || thoughts < 0) return thoughts;
  if (candidates === undefined || candidates === null) return thoughts;
  if (typeof candidates !== "number" || !Number.isSafeInteger(candidates) || candidates < 0) return candidates;
  return candidates + thoughts;
}

/** `[{"modality":"AUDIO","tokenCount":N}, ...]`: the AUDIO entries' count (undefined when none). */
function audioCount(details: unknown): unknown {
  if (!Array.isArray(details)) return undefined;
  let sum: number | undefined;
  for (const d of details) {
    if (!isObject(d) || d.modality !== "AUDIO") continue;
    if (typeof d.tokenCount !== "number") return d.tokenCount;
    sum = (sum ?? 0) + d.tokenCount;
  }
  return sum;
}

/** The longest service tier name kept; a longer value is no tier name. */
const MAX_TIER_LENGTH = 32;

/**
 * The service tier an answer names (src/pricing/tiers.ts), set on the usage its reader just made
 * (`fresh`, never one carried from an earlier event, which is the caller's `seen`). A value that
 * is not a short string is no tier: left out, priced as an answer that names none.
 */
export function withTier(fresh: Usage | undefined, seen: Usage | undefined, tier: unknown): Usage | undefined {
  if (fresh === undefined || fresh === seen) return fresh;
  if (typeof tier === "string" && tier.length <= MAX_TIER_LENGTH) fresh.serviceTier = tier;
  return fresh;
}
