/** The per-token key error budget: a fixed minute from the first error, refused past it with Retry-After. */
import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { KeyErrorBudget } from "./key-error-budget.js";

describe("KeyErrorBudget", () => {
  it("refuses a token past its budget for the rest of its minute, others not at all", () => {
    const b = new KeyErrorBudget(3);
    for (let i = 0; i < 3; i++) {
      b.admit("tok_a", 1_000);
      b.charge("tok_a", 1_000 + i);
    }
    expect(b.allows("tok_a", 2_000)).toBe(false);
    const e = (() => {
      try {
        b.admit("tok_a", 31_000);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(RelayError);
    expect((e as RelayError).status).toBe(429);
    expect((e as RelayError).retryAfter).toBe(30);
    expect(b.allows("tok_b", 2_000)).toBe(true);
    // A new window once the minute is over.
    expect(b.allows("tok_a", 61_000)).toBe(true);
    b.charge("tok_a", 61_000);
    expect(b.allows("tok_a", 61_001)).toBe(true);
  });

  it("0 turns it off", () => {
    const b = new KeyErrorBudget(0);
    for (let i = 0; i < 100; i++) b.charge("tok", i);
    expect(() => b.admit("tok", 100)).not.toThrow();
  });
});
