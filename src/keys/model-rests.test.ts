/** Per-model rests of one key: by model, the longer rest kept, a rest begun once, bounded. */
import { describe, expect, it } from "vitest";
import { ModelRests } from "./model-rests.js";

describe("ModelRests", () => {
  it("rests one model, not the others, until its time", () => {
    const r = new ModelRests();
    expect(r.add("gpt-4o", 1_000, 0)).toBe(true);
    expect(r.has("gpt-4o", 999)).toBe(true);
    expect(r.has("gpt-4o", 1_000)).toBe(false);
    expect(r.has("o3", 500)).toBe(false);
    expect(r.has(undefined, 500)).toBe(false);
    expect(r.left("gpt-4o", 400)).toBe(600);
    expect(r.any(500)).toBe(true);
    expect(r.any(1_000)).toBe(false);
  });

  it("keeps the longer rest and says when a rest began (for the audit log)", () => {
    const r = new ModelRests();
    expect(r.add("m", 5_000, 0)).toBe(true);
    expect(r.add("m", 3_000, 100)).toBe(false); // shorter: ignored
    expect(r.left("m", 100)).toBe(4_900);
    expect(r.add("m", 8_000, 200)).toBe(false); // longer, but still the same rest
    expect(r.left("m", 200)).toBe(7_800);
    expect(r.add("m", 9_000, 8_500)).toBe(true); // the rest had ended: a new one
  });

  it("holds at most 256 models: ended rests go first, then the oldest", () => {
    const r = new ModelRests();
    for (let i = 0; i < 300; i++) r.add(`m${i}`, i < 100 ? 10 : 10_000, 0);
    r.add("late", 10_000, 20); // trims: m0..m99 ended
    expect(r.has("m100", 20)).toBe(true);
    for (let i = 0; i < 300; i++) r.add(`n${i}`, 10_000, 20);
    let resting = 0;
    for (const name of [...Array.from({ length: 300 }, (_, i) => `m${i}`), ...Array.from({ length: 300 }, (_, i) => `n${i}`), "late"])
      if (r.has(name, 20)) resting++;
    expect(resting).toBe(256);
    expect(r.has("n299", 20)).toBe(true); // the newest stay
    expect(r.has("m100", 20)).toBe(false); // the oldest went
  });
});
