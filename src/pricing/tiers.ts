/**
 * Price tiers: which of a model's prices a call is billed at. Providers bill some calls above a
 * model's base price, and a dollar budget must never count them at less than the bill:
 *
 * - Priority processing (OpenAI `service_tier: "priority"`). The answer's `service_tier` says
 *   which tier served the call (OpenAI documents that it reports the tier actually used, which
 *   may differ from the request's, so a project whose default is priority gets answers saying
 *   "priority"). Any other name, or none, is billed at the base price: charging priority for
 *   "auto" or a missing field would charge every standard call of such an answer 1.7-2x.
 * - Long context (Gemini 2.5 Pro and 3 Pro above 200k prompt tokens, Claude Sonnet 4/4.5 above
 *   200k input tokens with the 1M context): every token of such a call at the tier's prices.
 *
 * When both apply, each part is the long-context price scaled by the priority/base ratio,
 * rounded up. What a call is charged (costOf) follows what its answer reports; what it reserves
 * before (maxCostOf) is the dearest tier it may be billed at: priority unless known otherwise
 * (the tier is known only from the answer), long context when its input estimate is above the
 * threshold. Only prices that carry a tier pay for the choice: the rest are their own base.
 */
import type { Usage } from "../providers/types.js";
import type { ModelPrice, PartPrices } from "./types.js";

/** Whether a call whose answer names `tier` was billed at the priority tier. */
export function billedPriority(tier: string | undefined): boolean {
  return tier === "priority";
}

/** The prices a call with this usage is billed at. */
export function billedPrices(price: ModelPrice, usage: Usage): PartPrices {
  if (price.priority === undefined && price.longContext === undefined) return price;
  return pick(price, price.priority !== undefined && billedPriority(usage.serviceTier), usage.promptTokens);
}

/** The dearest prices a call of `inputTokens` prompt tokens may be billed at (its tier unknown until the answer). */
export function dearestPrices(price: ModelPrice, inputTokens: number): PartPrices {
  if (price.priority === undefined && price.longContext === undefined) return price;
  return pick(price, price.priority !== undefined, inputTokens);
}

function pick(price: ModelPrice, priority: boolean, promptTokens: number): PartPrices {
  const long = price.longContext !== undefined && promptTokens > price.longContext.above ? price.longContext : undefined;
  if (!priority) return long ?? price;
  if (long === undefined) return price.priority!;
  let both = BOTH.get(price);
  if (both === undefined) {
    both = scaled(long, price.priority!, price);
    BOTH.set(price, both);
  }
  return both;
}

/** Long context at priority, per price object (prices are immutable once loaded). */
const BOTH = new WeakMap<ModelPrice, PartPrices>();

/** Each part of `prices` times tier/base, rounded up (micro-dollars per million tokens). */
function scaled(prices: PartPrices, tier: PartPrices, base: PartPrices): PartPrices {
  const part = (p: number, t: number, b: number): number => {
    // A free base part has no ratio: the tier's own price, or the price's, whichever is dearer.
    if (b <= 0) return Math.max(p, t);
    const n = BigInt(p) * BigInt(t);
    const d = BigInt(b);
    return Number((n + d - 1n) / d);
  };
  const out: PartPrices = { input: part(prices.input, tier.input, base.input), output: part(prices.output, tier.output, base.output) };
  // Each optional part as its own price (absent: the side's plain price), so no part gets cheaper.
  const cached = (x: PartPrices) => x.cachedInput ?? x.input;
  const write = (x: PartPrices) => x.cacheWrite ?? x.input;
  const audioIn = (x: PartPrices) => x.audioInput ?? x.input;
  const audioOut = (x: PartPrices) => x.audioOutput ?? x.output;
  if (prices.cachedInput !== undefined || tier.cachedInput !== undefined) out.cachedInput = part(cached(prices), cached(tier), cached(base));
  if (prices.cacheWrite !== undefined || tier.cacheWrite !== undefined) out.cacheWrite = part(write(prices), write(tier), write(base));
  if (prices.audioInput !== undefined || tier.audioInput !== undefined) out.audioInput = part(audioIn(prices), audioIn(tier), audioIn(base));
  if (prices.audioOutput !== undefined || tier.audioOutput !== undefined) out.audioOutput = part(audioOut(prices), audioOut(tier), audioOut(base));
  return out;
}

/**
 * An admin's price (the override shape states base prices only) with the tiers of the shipped
 * price of the same model, scaled part by part by admin/shipped base: an admin's discount on the
 * base carries to the tiers, and a tiered model never loses its tiers to an override. Cached per
 * pair of price objects, so a lookup allocates nothing after the first.
 */
export function withShippedTiers(admin: ModelPrice, shipped: ModelPrice | undefined): ModelPrice {
  if (shipped === undefined || (shipped.priority === undefined && shipped.longContext === undefined)) return admin;
  if (admin.priority !== undefined || admin.longContext !== undefined) return admin;
  let byShipped = INHERITED.get(admin);
  if (byShipped === undefined) {
    byShipped = new WeakMap();
    INHERITED.set(admin, byShipped);
  }
  let out = byShipped.get(shipped);
  if (out === undefined) {
    out = { ...admin };
    if (shipped.priority !== undefined) out.priority = scaled(admin, shipped.priority, shipped);
    if (shipped.longContext !== undefined) out.longContext = { ...scaled(admin, shipped.longContext, shipped), above: shipped.longContext.above };
    byShipped.set(shipped, out);
  }
  return out;
}

const INHERITED = new WeakMap<ModelPrice, WeakMap<ModelPrice, ModelPrice>>();
