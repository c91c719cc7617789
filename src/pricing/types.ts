/**
 * Prices (issue 24): micro-dollars (millionths of a US dollar) per million tokens. What the
 * engine needs from the price book; src/pricing holds the shipped table, the admin's overrides
 * and the arithmetic.
 */
import type { Usage } from "../providers/types.js";

export interface ModelPrice {
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

export interface Prices {
  /** The price in force for a provider's model (admin override, else shipped); undefined: unpriced. Synchronous, from memory. */
  priceOf(provider: string, model: string | undefined): ModelPrice | undefined;
  /** A call's cost in whole micro-dollars from the usage the provider reported. */
  costOf(price: ModelPrice, usage: Usage): number;
  /**
   * The most a call may cost: `inputTokens` at the dearest input-side price (input, cache write,
   * audio input) plus `outputTokens` at the dearest output-side price, rounded up (src/pricing/cost.ts).
   */
  maxCostOf(price: ModelPrice, inputTokens: number, outputTokens: number): number;
}
