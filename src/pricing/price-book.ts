/**
 * The prices in force (issue 24): the admin's overrides (table `prices`) over the shipped table
 * (src/pricing/builtin-prices.ts). Lookups are synchronous, from memory; the overrides are
 * loaded at start, after every local change, and every `refreshMs`, so a price set on one
 * instance reaches every instance within that time.
 *
 * Precedence: the admin's layer is searched first (exact name, then longest prefix), then the
 * shipped one. So an admin's `gpt-4o*` reprices `gpt-4o` too, although the shipped table has
 * an exact `gpt-4o`: the admin's word is the newer one. An admin's price keeps the tiers
 * (priority, long context) of the shipped price the model would have, scaled to the admin's base.
 */
import type { Db } from "../db/client.js";
import { deletePrice, listPriceOverrides, upsertPrice } from "../db/queries/prices.js";
import type { PriceRow } from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import { PeriodicReload } from "../periodic-reload.js";
import type { Usage } from "../providers/types.js";
import { BUILTIN_PRICES, BUILTIN_PRICES_AS_OF } from "./builtin-prices.js";
import { costOf, maxCostOf } from "./cost.js";
import { PriceTable } from "./price-table.js";
import { withShippedTiers } from "./tiers.js";
import type { ModelPrice, Prices } from "./types.js";

/** One entry as ListPrices shows it. */
export interface ListedPrice {
  provider: string;
  /** As set: an exact name or a `prefix*`. */
  model: string;
  price: ModelPrice;
  source: "builtin" | "admin";
  /** YYYY-MM-DD: the shipped table's date, or the day the admin set it. */
  asOf: string;
}

/** A model as requests name it, or a `prefix*` (`*` alone: every model of the provider). */
const MODEL_PATTERN = /^[A-Za-z0-9._:@/+=~-]{0,128}\*?$/;
/** $1,000,000 per million tokens: far above any real price, far below overflowing a sum. */
export const MAX_PRICE_MICRO_USD = 1_000_000_000_000;

const BUILTIN_TABLE = new PriceTable(
  [...BUILTIN_PRICES].flatMap(([provider, models]) => [...models].map(([model, price]) => [provider, model, price] as [string, string, ModelPrice])),
);

export class PriceBook implements Prices {
  #overrides: PriceRow[] = [];
  #admin = new PriceTable([]);
  readonly #refresh = new PeriodicReload(() => this.reload());

  constructor(private readonly db: Db) {}

  /** Loads the overrides and keeps them fresh every `refreshMs` (0: only after local changes). */
  start(refreshMs: number): Promise<void> {
    return this.#refresh.start(refreshMs);
  }

  stop(): void {
    this.#refresh.stop();
  }

  async reload(): Promise<void> {
    const rows = await listPriceOverrides(this.db);
    this.#admin = new PriceTable(rows.map((r) => [r.provider, r.model, fromRow(r)]));
    this.#overrides = rows;
  }

  priceOf(provider: string, model: string | undefined): ModelPrice | undefined {
    if (model === undefined) return undefined;
    const admin = this.#admin.find(provider, model);
    const shipped = BUILTIN_TABLE.find(provider, model);
    if (admin === undefined) return shipped;
    // The admin's price states base prices only (SetPrice has no tier fields): the shipped
    // tiers of the same model stay, scaled to it (src/pricing/tiers.ts).
    return withShippedTiers(admin, shipped);
  }

  costOf(price: ModelPrice, usage: Usage): number {
    return costOf(price, usage);
  }

  maxCostOf(price: ModelPrice, inputTokens: number, outputTokens: number): number {
    return maxCostOf(price, inputTokens, outputTokens);
  }

  /** Every price in force (shipped entries an admin replaced are shown as the admin's), by provider then model. */
  list(provider?: string): ListedPrice[] {
    const byKey = new Map<string, ListedPrice>();
    for (const [p, models] of BUILTIN_PRICES) {
      for (const [model, price] of models) byKey.set(`${p}\n${model}`, { provider: p, model, price, source: "builtin", asOf: BUILTIN_PRICES_AS_OF });
    }
    for (const r of this.#overrides) {
      byKey.set(`${r.provider}\n${r.model}`, {
        provider: r.provider,
        model: r.model,
        price: fromRow(r),
        source: "admin",
        asOf: r.updatedAt.toISOString().slice(0, 10),
      });
    }
    return [...byKey.values()]
      .filter((e) => provider === undefined || provider === "" || e.provider === provider)
      .sort((a, b) => a.provider.localeCompare(b.provider) || a.model.localeCompare(b.model));
  }

  /** Sets (or replaces) an admin price; every lookup on this instance sees it when this resolves. */
  async set(provider: string, model: string, price: ModelPrice): Promise<ListedPrice> {
    checkPrice(model, price);
    const row = await upsertPrice(this.db, {
      provider,
      model,
      input: price.input,
      cachedInput: price.cachedInput ?? null,
      cacheWrite: price.cacheWrite ?? null,
      output: price.output,
      audioInput: price.audioInput ?? null,
      audioOutput: price.audioOutput ?? null,
    });
    await this.reload();
    return { provider, model, price: fromRow(row), source: "admin", asOf: row.updatedAt.toISOString().slice(0, 10) };
  }

  /** Removes an admin price (the shipped one, if any, applies again); false when there was none. */
  async delete(provider: string, model: string): Promise<boolean> {
    const deleted = await deletePrice(this.db, provider, model);
    await this.reload();
    return deleted;
  }
}

/**
 * A finished call's cost under `prices`: undefined when its model has no price. A call that
 * names no model and reports no usage (a model list, a file download) metered nothing: 0. A
 * priced call that reported no usage (an error answer) is 0 too: nothing was reported to bill.
 */
export function callCost(prices: Prices, provider: string, model: string | undefined, usage: Usage | undefined): number | undefined {
  if (model === undefined && usage === undefined) return 0;
  const price = prices.priceOf(provider, model);
  if (price === undefined) return undefined;
  return usage === undefined ? 0 : prices.costOf(price, usage);
}

function checkPrice(model: string, price: ModelPrice): void {
  if (!MODEL_PATTERN.test(model) || model.indexOf("*") !== model.lastIndexOf("*") || model === "") {
    throw new RelayError("bad_request", "model must be a model name (at most 128 of A-Z a-z 0-9 . _ : @ / + = ~ -), optionally ending in *");
  }
  const all: [string, number | undefined][] = [
    ["input", price.input],
    ["output", price.output],
    ["cached_input", price.cachedInput],
    ["cache_write", price.cacheWrite],
    ["audio_input", price.audioInput],
    ["audio_output", price.audioOutput],
  ];
  for (const [name, v] of all) {
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_PRICE_MICRO_USD) {
      throw new RelayError("bad_request", `${name} must be 0-${MAX_PRICE_MICRO_USD} micro-dollars per million tokens`);
    }
  }
}

function fromRow(r: PriceRow): ModelPrice {
  const p: ModelPrice = { input: r.input, output: r.output };
  if (r.cachedInput !== null) p.cachedInput = r.cachedInput;
  if (r.cacheWrite !== null) p.cacheWrite = r.cacheWrite;
  if (r.audioInput !== null) p.audioInput = r.audioInput;
  if (r.audioOutput !== null) p.audioOutput = r.audioOutput;
  return p;
}
