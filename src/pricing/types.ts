/**
 * Prices (issue 24): micro-dollars (millionths of a US dollar) per million tokens. What the
 * engine needs from the price book; src/pricing holds the shipped table, the admin's overrides
 * and the arithmetic.
 */
import type { Usage } from "../providers/types.js";

/** One price per part of a call's usage, micro-dollars per million tokens. */
export interface PartPrices {
  input: number;
  /** Prompt tokens read from the cache; absent: the input price. */
  cachedInput?: number | undefined;
  /** Prompt tokens written to the cache (Anthropic); absent: the input price. */
  cacheWrite?: number | undefined;
  /** Output tokens, reasoning tokens included. */
  output: number;
  /** Audio prompt tokens; absent: the input price. */
  audioInput?: number | undefined;
  /** Audio output tokens; absent: the output price. */
  audioOutput?: number | undefined;
}

/**
 * A model's price: its base (standard tier) prices, and the tiers a provider bills above them
 * (src/pricing/tiers.ts). A call is billed at the tier its answer reports: `priority` when the
 * provider says it served it at its priority tier, `longContext` when its prompt counts more than `longContext.above` tokens (every
 * token of the call, not only those above). A model without a tier is billed its base price.
 */
export interface ModelPrice extends PartPrices {
  /** Prices of the priority tier (OpenAI priority processing); absent: none is dearer than the base. */
  priority?: PartPrices | undefined;
  /** Prices of a call whose prompt is longer than `above` tokens (Gemini 2.5 Pro, Claude Sonnet 4.x with 1M context). */
  longContext?: LongContextPrices | undefined;
}

export interface LongContextPrices extends PartPrices {
  /** Prompt tokens (every input token, cached and cache writes included) up to which the base tier applies. */
  above: number;
}

export interface Prices {
  /** The price in force for a provider's model (admin override, else shipped); undefined: unpriced. Synchronous, from memory. */
  priceOf(provider: string, model: string | undefined): ModelPrice | undefined;
  /** A call's cost in whole micro-dollars from the usage the provider reported, at the tier it reports. */
  costOf(price: ModelPrice, usage: Usage): number;
  /**
   * The most a call may cost: `inputTokens` at the dearest input-side price (input, cache write,
   * audio input) plus `outputTokens` at the dearest output-side price, of the dearest tier a call
   * with that prompt may be billed at, rounded up (src/pricing/cost.ts).
   */
  maxCostOf(price: ModelPrice, inputTokens: number, outputTokens: number): number;
}
