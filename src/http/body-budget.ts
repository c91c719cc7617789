/**
 * The global byte budget for request bodies held in memory (DESIGN 3.4, issue 17). Every body
 * the relay buffers, on the HTTP layer and on the Connect routes, takes its bytes from one
 * budget before (or while) it is read, and gives them back when its request ends, however it
 * ends. Past the budget a request is refused at once (503 with Retry-After) rather than the
 * process growing until it runs out of memory; the per-request body limit alone did not bound
 * the sum (40 clients x 10 MB).
 */
import { RelayError } from "../errors.js";

/** Seconds a refused client is asked to wait: bodies come back as their requests end. */
const RETRY_AFTER_S = 1;

export function budgetExhausted(): RelayError {
  return new RelayError("unavailable", "too many request bodies in flight, retry shortly", { retryAfter: RETRY_AFTER_S });
}

export class BodyBudget {
  #held = 0;

  /** `capacity` bytes across all requests; 0 turns the budget off. */
  constructor(readonly capacity: number) {}

  /** Bytes taken by requests that have not ended. */
  get held(): number {
    return this.#held;
  }

  /**
   * An account for one request. `cap` is the most the request can hold at once (the body
   * limit): a long stream of messages is charged that much at most, not the sum of its messages.
   */
  open(cap = Number.POSITIVE_INFINITY): BodyAccount {
    return new BodyAccount(this, cap);
  }

  /** @internal Takes `n` bytes if they fit. */
  tryTake(n: number): boolean {
    if (this.capacity > 0 && this.#held + n > this.capacity) return false;
    this.#held += n;
    return true;
  }

  /** @internal */
  give(n: number): void {
    this.#held -= n;
  }
}

/** One request's share of the budget: taken piecewise, given back whole and once. */
export class BodyAccount {
  #taken = 0;
  #released = false;

  constructor(
    private readonly budget: BodyBudget,
    private readonly cap: number,
  ) {}

  get taken(): number {
    return this.#taken;
  }

  /** Takes `n` more bytes (up to the cap) or throws a 503 RelayError; nothing after release. */
  take(n: number): void {
    if (this.#released) throw budgetExhausted();
    const want = Math.min(n, this.cap - this.#taken);
    if (want <= 0) return;
    if (!this.budget.tryTake(want)) throw budgetExhausted();
    this.#taken += want;
  }

  /** Gives every byte back; later calls do nothing. An arrow, so it can be a listener as is. */
  readonly release = (): void => {
    if (this.#released) return;
    this.#released = true;
    this.budget.give(this.#taken);
    this.#taken = 0;
  };
}
