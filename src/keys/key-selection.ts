/**
 * How a pool picks its next key (DESIGN 8): round robin, smooth weighted round robin (the
 * nginx algorithm: deterministic, spreads a weight-3 key as A A B A rather than A A A B), or
 * least recently used. Pure and in memory; the registry hands it only the keys usable for the
 * call (not disabled, not resting for its model, not tried yet).
 */
export type Strategy = "round_robin" | "weighted" | "least_recently_used";

export interface Candidate {
  id: string;
  weight: number;
  lastUsedMs: number;
  /** Current weight of the smooth weighted round robin. */
  current: number;
}

export class Selector {
  #next = 0;

  constructor(readonly strategy: Strategy) {}

  /** Picks one of `keys` (all usable), or undefined when there is none. */
  pick<K extends Candidate>(keys: readonly K[]): K | undefined {
    if (keys.length === 0) return undefined;
    switch (this.strategy) {
      case "round_robin":
        return keys[this.#next++ % keys.length];
      case "least_recently_used": {
        let best = keys[0]!;
        for (const k of keys) if (k.lastUsedMs < best.lastUsedMs) best = k;
        return best;
      }
      case "weighted": {
        let total = 0;
        let best = keys[0]!;
        for (const k of keys) {
          k.current += k.weight;
          total += k.weight;
          if (k.current > best.current) best = k;
        }
        best.current -= total;
        return best;
      }
    }
  }
}

export const STRATEGY_BY_NUMBER: Record<number, Strategy> = {
  0: "round_robin",
  1: "round_robin",
  2: "weighted",
  3: "least_recently_used",
};
