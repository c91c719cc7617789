/**
 * The in-process limiters behind `Limits` (src/limits/limits.ts): token buckets per key and
 * concurrency slots. One Map entry per key and no timer per key, so a check is a Map lookup
 * and some arithmetic (well under a microsecond); Bottleneck's local datastore was measured at
 * milliseconds of latency per job (see limits.ts), too slow for the hot path.
 */

interface Bucket {
  /** Tokens left at `at` (fractional: refill is continuous). */
  tokens: number;
  at: number;
  /** Droppable from this time: idle for `idleMs` and full again, so forgetting it loses nothing. */
  until: number;
}

/**
 * Token buckets: `burst` tokens, refilled at `rpm` per minute. With Redis, the buckets of shared
 * keys also hold the shared state last seen (`observe`), so a fallback starts from it.
 */
export class LocalRates {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly idleMs: number) {}

  /**
   * Takes `cost` tokens; returns 0 when admitted, else the milliseconds until they are back.
   * A key not seen before starts with `initial` tokens (a full bucket unless told otherwise).
   */
  take(key: string, rpm: number, burst: number, now: number, cost = 1, initial = burst): number {
    const perMs = rpm / 60_000;
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: Math.min(burst, initial), at: now, until: 0 };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + (now - b.at) * perMs);
      b.at = now;
    }
    const admitted = b.tokens >= cost;
    if (admitted) b.tokens -= cost;
    b.until = now + Math.max(this.idleMs, (burst - b.tokens) / perMs);
    return admitted ? 0 : (cost - b.tokens) / perMs;
  }

  /** Tokens the key's bucket holds at `now`, or undefined for a key not seen. */
  peek(key: string, rpm: number, burst: number, now: number): number | undefined {
    const b = this.buckets.get(key);
    return b === undefined ? undefined : Math.min(burst, b.tokens + Math.max(0, now - b.at) * (rpm / 60_000));
  }

  /** Sets the key's bucket to `tokens` at `now` (what the shared bucket was seen to hold). */
  observe(key: string, rpm: number, burst: number, tokens: number, now: number): void {
    const perMs = rpm / 60_000;
    const clamped = Math.max(0, Math.min(burst, tokens));
    const b = this.buckets.get(key);
    const until = now + Math.max(this.idleMs, (burst - clamped) / perMs);
    if (b === undefined) this.buckets.set(key, { tokens: clamped, at: now, until });
    else Object.assign(b, { tokens: clamped, at: now, until: Math.max(b.until, until) });
  }

  /** Forgets idle buckets; O(n), run every idleMs/2 by `Limits`. */
  sweep(now: number): void {
    for (const [key, b] of this.buckets) if (b.until <= now) this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }
}

/** Concurrency slots per key (entries exist only while a slot is held). */
export class Slots {
  private readonly held = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** A release function (idempotent), or null when the key is full. */
  tryAcquire(key: string): (() => void) | null {
    const n = this.held.get(key) ?? 0;
    if (n >= this.max) return null;
    this.held.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(key) ?? 1) - 1;
      if (left > 0) this.held.set(key, left);
      else this.held.delete(key);
    };
  }

  get size(): number {
    return this.held.size;
  }
}
