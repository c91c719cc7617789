/**
 * One layer of prices (the shipped table, or the admin's overrides) and how a request's model
 * finds its entry: the exact name first, then the longest `prefix*` entry that the name starts
 * with (dated snapshots: `gpt-4o-2024-*` prices `gpt-4o-2024-08-06`). `*` alone is the empty
 * prefix: every model of the provider.
 */
import type { ModelPrice } from "./types.js";

export class PriceTable {
  /** provider -> exact model -> price. */
  readonly #exact = new Map<string, Map<string, ModelPrice>>();
  /** provider -> [prefix, price], longest prefix first. */
  readonly #prefixes = new Map<string, [string, ModelPrice][]>();

  constructor(entries: Iterable<[provider: string, model: string, price: ModelPrice]>) {
    for (const [provider, model, price] of entries) {
      if (model.endsWith("*")) {
        const list = this.#prefixes.get(provider) ?? [];
        list.push([model.slice(0, -1), price]);
        this.#prefixes.set(provider, list);
      } else {
        const map = this.#exact.get(provider) ?? new Map<string, ModelPrice>();
        map.set(model, price);
        this.#exact.set(provider, map);
      }
    }
    for (const list of this.#prefixes.values()) list.sort((a, b) => b[0].length - a[0].length);
  }

  /** The price of `model` in this layer; undefined when no entry matches. */
  find(provider: string, model: string): ModelPrice | undefined {
    const exact = this.#exact.get(provider)?.get(model);
    if (exact !== undefined) return exact;
    const list = this.#prefixes.get(provider);
    if (list === undefined) return undefined;
    for (const [prefix, price] of list) if (model.startsWith(prefix)) return price;
    return undefined;
  }
}
