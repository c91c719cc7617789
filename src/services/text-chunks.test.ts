/** TextChunks: whole characters across any split, refusals instead of U+FFFD, the BOM kept. */
import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { NOT_UTF8, TextChunks, utf8Body } from "./text-chunks.js";

const bytes = (s: string): Buffer => Buffer.from(s, "utf8");

/** Pushes `parts` and returns the texts each push gave. */
function run(parts: Uint8Array[]): string[] {
  const t = new TextChunks();
  const out = parts.map((p) => t.push(p));
  t.end(false);
  return out;
}

describe("TextChunks", () => {
  it("holds an incomplete trailing character back until the next chunk, at every split", () => {
    const text = 'data: {"content":"€ 日本 😀 ok"}\n\n';
    const all = bytes(text);
    for (let cut = 0; cut <= all.length; cut++) {
      const out = run([all.subarray(0, cut), all.subarray(cut)]);
      expect(out.join(""), `cut at ${cut}`).toBe(text);
      // No piece ever carries a lone surrogate or a replacement character.
      for (const piece of out) expect(piece).not.toMatch(/\uFFFD|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    }
  });

  it("sends a four-byte character whole when it arrives one byte per chunk", () => {
    const emoji = bytes("😀");
    expect(run([...emoji].map((b) => Uint8Array.of(b)))).toEqual(["", "", "", "😀"]);
  });

  it("refuses bytes that are not UTF-8 with a bad_request RelayError, and stays refused", () => {
    const t = new TextChunks();
    expect(t.push(bytes("ok "))).toBe("ok ");
    const err = (() => {
      try {
        t.push(Uint8Array.of(0x61, 0xff, 0x62));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(RelayError);
    expect((err as RelayError).code).toBe("bad_request");
    expect((err as RelayError).message).toBe(NOT_UTF8);
    expect(t.failed).toBe(true);
    expect(() => t.push(bytes("more"))).toThrow(NOT_UTF8);
  });

  it("refuses an overlong encoding and a lone surrogate's bytes (never U+FFFD)", () => {
    expect(() => run([Uint8Array.of(0xc0, 0xaf)])).toThrow(NOT_UTF8);
    expect(() => run([Uint8Array.of(0xed, 0xa0, 0x80)])).toThrow(NOT_UTF8);
  });

  it("refuses an answer that ends inside a character, unless the stream was cut", () => {
    const t = new TextChunks();
    expect(t.push(Uint8Array.of(0x61, 0xe2, 0x82))).toBe("a");
    expect(() => t.end(false)).toThrow(NOT_UTF8);
    const cut = new TextChunks();
    cut.push(Uint8Array.of(0xe2, 0x82));
    expect(() => cut.end(true)).not.toThrow();
    expect(cut.failed).toBe(false);
  });

  it("keeps a leading byte-order mark as part of the text", () => {
    expect(run([Uint8Array.of(0xef, 0xbb), Uint8Array.of(0xbf, 0x61)]).join("")).toBe("\uFEFFa");
  });
});

describe("utf8Body", () => {
  it("sends body_text as its UTF-8 bytes and refuses a lone surrogate", () => {
    expect(utf8Body('{"content":"€ 😀"}').equals(bytes('{"content":"€ 😀"}'))).toBe(true);
    expect(() => utf8Body('{"content":"\ud800"}')).toThrow("body_text is not valid UTF-8 text");
    expect(() => utf8Body("\udc00x")).toThrow("body_text is not valid UTF-8 text");
  });
});
