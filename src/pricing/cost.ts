/**
 * A call's cost from the usage its provider reported (issue 24), in whole micro-dollars.
 *
 * Usage arrives normalised by the meters (src/providers/shapes/usage-parts.ts): `promptTokens`
 * counts every input token, the cached, cache-written and audio ones included (OpenAI's
 * prompt_tokens already does; Anthropic's input_tokens does not, so its meter adds the cache
 * counts; Gemini's promptTokenCount includes cachedContentTokenCount); `completionTokens`
 * counts every output token, reasoning and audio included (Gemini's thoughtsTokenCount is added
 * by its meter, as it is not in candidatesTokenCount). So the parts are priced at their own
 * price and the remainder of each side at the plain input or output price.
 *
 * Exact integer arithmetic: prices are micro-dollars per million tokens, so a part costs
 * tokens x price / 1e6 micro-dollars. The products are summed exactly (BigInt: 1e7 tokens x
 * $1e6 per million would pass 2^53) and divided by 1e6 once per call, rounding half up: a call
 * of 1 token at $0.50 per million (0.5 micro-dollars) costs 1, at $0.40 it costs 0.
 */
import type { Usage } from "../providers/types.js";
import { billedPrices, dearestPrices } from "./tiers.js";
import type { ModelPrice, PartPrices } from "./types.js";

const MILLION = 1_000_000n;

/** A count or price as a BigInt; a value no meter lets through (NaN, Infinity) counts as 0. */
function big(n: number): bigint {
  return Number.isFinite(n) ? BigInt(Math.round(n)) : 0n;
}

/** How many of `want` tokens fit in what is `left`; never negative. */
function take(want: number | undefined, left: number): number {
  return Math.max(0, Math.min(want ?? 0, left));
}

/** The sum of tokens x price over the call, in micro-dollar-millionths (not yet divided). */
function costUnits(price: PartPrices, usage: Usage): bigint {
  // A part larger than its side (a provider's inconsistent report) is capped to the side, so
  // no remainder is ever negative and nothing is counted twice.
  let prompt = Math.max(0, usage.promptTokens);
  const cached = take(usage.cachedTokens, prompt);
  prompt -= cached;
  const written = take(usage.cacheWriteTokens, prompt);
  prompt -= written;
  const audioIn = take(usage.audioInputTokens, prompt);
  prompt -= audioIn;
  let completion = Math.max(0, usage.completionTokens);
  const audioOut = take(usage.audioOutputTokens, completion);
  completion -= audioOut;
  const part = (tokens: number, perMillion: number): bigint => big(tokens) * big(perMillion);
  return (
    part(prompt, price.input) +
    part(cached, price.cachedInput ?? price.input) +
    part(written, price.cacheWrite ?? price.input) +
    part(audioIn, price.audioInput ?? price.input) +
    part(completion, price.output) +
    part(audioOut, price.audioOutput ?? price.output)
  );
}

/** A call's cost in micro-dollars at the tier its usage reports (src/pricing/tiers.ts), rounded half up once (see the module comment). */
export function costOf(price: ModelPrice, usage: Usage): number {
  return Number((costUnits(billedPrices(price, usage), usage) + MILLION / 2n) / MILLION);
}

/**
 * The most a call of `inputTokens` in and `outputTokens` out may cost, rounded up: at the dearest
 * tier such a call may be billed at (src/pricing/tiers.ts: priority unless the price has none,
 * long context above its threshold), each side at its highest price (a prompt may turn out to be
 * cache writes or audio, dearer than plain input), so a reservation made with it is never short.
 */
export function maxCostOf(model: ModelPrice, inputTokens: number, outputTokens: number): number {
  const price = dearestPrices(model, inputTokens);
  const inPrice = Math.max(price.input, price.cacheWrite ?? 0, price.audioInput ?? 0, price.cachedInput ?? 0);
  const outPrice = Math.max(price.output, price.audioOutput ?? 0);
  const units = big(Math.ceil(Math.max(0, inputTokens))) * big(inPrice) + big(Math.ceil(Math.max(0, outputTokens))) * big(outPrice);
  return Number((units + MILLION - 1n) / MILLION);
}
