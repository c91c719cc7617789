import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BodyRedactor, REDACTED, redactHeaders } from "./redact.js";

const KEY = "sk-proj-ABCdef0123456789xyz";

/** Feeds `text` cut at `cuts` and returns what would be forwarded. */
function through(text: string, cuts: number[], key = KEY, limit?: number): { out: string; cut: boolean } {
  const r = new BodyRedactor(key, limit);
  const bytes = Buffer.from(text);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    parts.push(r.feed(bytes.subarray(from, p)));
    from = p;
  }
  parts.push(r.end());
  return { out: Buffer.concat(parts).toString(), cut: r.cut };
}

describe("BodyRedactor", () => {
  it("replaces the key, whole or split across chunks", () => {
    const text = `{"error":{"message":"Incorrect API key provided: ${KEY}. Key ${KEY}"}}`;
    const expected = text.split(KEY).join(REDACTED);
    for (let cut = 0; cut <= text.length; cut++) expect(through(text, [cut]).out).toBe(expected);
  });

  it("passes a body without the key unchanged, one byte at a time", () => {
    const text = `nothing here but sk-proj-ABC and ${KEY.slice(0, -1)}`;
    expect(
      through(
        text,
        Array.from({ length: text.length }, (_, i) => i),
      ).out,
    ).toBe(text);
  });

  it("equals a whole-body replacement under any chunking (property)", () => {
    const alphabet = fc.constantFrom("a", "s", "k", "-", KEY, KEY.slice(0, 5), KEY.slice(3), " ");
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 40 }), fc.array(fc.nat(2000), { maxLength: 6 }), (pieces, cuts) => {
        const text = pieces.join("");
        const { out } = through(text, cuts);
        expect(out).toBe(text.split(KEY).join(REDACTED));
        expect(out).not.toContain(KEY);
      }),
      { numRuns: 500 },
    );
  });

  it("catches the percent-encoded form of a key that has one", () => {
    const key = "key/with+plus=";
    const text = `bad: ${key} or ${encodeURIComponent(key)} here`;
    expect(through(text, [12, 30], key).out).toBe(`bad: ${REDACTED} or ${REDACTED} here`);
  });

  it("cuts a body past the limit, never leaving a key's beginning at the cut", () => {
    const unit = `${"e".repeat(100 - KEY.length)}${KEY}`;
    const text = unit.repeat(50);
    for (const limit of [150, 170, 185, 199, 200, 1000]) {
      const { out, cut } = through(text, [37, 333, 1024], KEY, limit);
      expect(cut).toBe(true);
      expect(out).not.toContain(KEY.slice(0, 4));
      expect(Buffer.byteLength(out)).toBeLessThanOrEqual(limit + 10 * REDACTED.length);
    }
  });
});

describe("redactHeaders", () => {
  it("replaces the key in every value, lists included, and leaves the rest alone", () => {
    const out = redactHeaders({ "www-authenticate": `Bearer realm="x", key="${KEY}"`, "x-list": ["a", `b ${KEY}`], "content-type": "application/json" }, KEY);
    expect(out).toEqual({ "www-authenticate": `Bearer realm="x", key="${REDACTED}"`, "x-list": ["a", `b ${REDACTED}`], "content-type": "application/json" });
  });
});
