/**
 * Per-token budget of upstream key errors (DESIGN 8, issue 17): every 401, 403 or 429 a pool
 * key answers strikes or rests that shared key, so a token whose calls keep drawing them is
 * refused itself, before its next call is counted, for the rest of the minute. One fixed
 * window per token, opened by its first key error.
 *
 * In memory, per instance: with N instances a token may draw N times the budget before it is
 * refused everywhere, each instance still letting it rest only a few keys.
 */
import { RelayError } from "../errors.js";

const WINDOW_MS = 60_000;

interface Window {
  startMs: number;
  errors: number;
}

export class KeyErrorBudget {
  readonly #windows = new Map<string, Window>();
  #sweepAt = 0;

  /** `perMinute` 0 turns the budget off. */
  constructor(private readonly perMinute: number) {}

  /** True while the token may still draw key errors in its current window. */
  allows(tokenId: string, now = Date.now()): boolean {
    if (this.perMinute <= 0) return true;
    const w = this.#windows.get(tokenId);
    return w === undefined || w.errors < this.perMinute || now - w.startMs >= WINDOW_MS;
  }

  /** Throws 429 with `Retry-After` (the rest of the window) when the token used its budget. */
  admit(tokenId: string, now = Date.now()): void {
    if (this.allows(tokenId, now)) return;
    const w = this.#windows.get(tokenId)!;
    throw new RelayError("rate_limited", "too many upstream key errors for this token", {
      retryAfter: Math.max(1, Math.ceil((w.startMs + WINDOW_MS - now) / 1000)),
    });
  }

  /** One key error drawn by the token's call. */
  charge(tokenId: string, now = Date.now()): void {
    if (this.perMinute <= 0) return;
    const w = this.#windows.get(tokenId);
    if (w !== undefined && now - w.startMs < WINDOW_MS) {
      w.errors++;
      return;
    }
    this.#windows.set(tokenId, { startMs: now, errors: 1 });
    // Memory follows the tokens with recent errors: closed windows go at most once a window.
    if (now >= this.#sweepAt) {
      this.#sweepAt = now + WINDOW_MS;
      for (const [id, old] of this.#windows) if (now - old.startMs >= WINDOW_MS) this.#windows.delete(id);
    }
  }
}
