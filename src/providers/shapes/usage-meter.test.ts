/**
 * Usage read from recorded real-shape responses of OpenAI, Anthropic and Gemini, whole and
 * streamed, including SSE events split at every possible byte boundary.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { ApiShape, Usage } from "../types.js";
import { anthropicShape, geminiShape, openaiShape } from "./index.js";

const fixture = (name: string) => readFileSync(new URL(`../../../test/fixtures/usage/${name}`, import.meta.url));

function meter(shape: ApiShape, contentType: string, chunks: Buffer[]): Usage | undefined {
  const m = shape.meter(contentType);
  for (const c of chunks) m.feed(c);
  return m.result();
}

const cases: [string, ApiShape, Usage, Usage][] = [
  ["openai", openaiShape, { promptTokens: 19, completionTokens: 10, totalTokens: 29 }, { promptTokens: 19, completionTokens: 9, totalTokens: 28 }],
  ["anthropic", anthropicShape, { promptTokens: 12, completionTokens: 6, totalTokens: 18 }, { promptTokens: 25, completionTokens: 15, totalTokens: 40 }],
  ["gemini", geminiShape, { promptTokens: 4, completionTokens: 11, totalTokens: 15 }, { promptTokens: 4, completionTokens: 11, totalTokens: 15 }],
];

describe.each(cases)("%s usage", (name, shape, whole, streamed) => {
  it("is read from a JSON answer, also when it arrives in pieces", () => {
    const body = fixture(`${name}.json`);
    expect(meter(shape, "application/json", [body])).toEqual(whole);
    expect(meter(shape, "application/json; charset=utf-8", [body.subarray(0, 7), body.subarray(7, 100), body.subarray(100)])).toEqual(whole);
  });

  it("is read from the final stream events, however the stream is split", () => {
    const body = fixture(`${name}.sse`);
    expect(meter(shape, "text/event-stream", [body])).toEqual(streamed);
    for (let cut = 1; cut < body.length; cut += 13) {
      expect(meter(shape, "text/event-stream; charset=utf-8", [body.subarray(0, cut), body.subarray(cut)])).toEqual(streamed);
    }
  });

  it("reports nothing for a stream without usage or a body that is not JSON", () => {
    expect(meter(shape, "text/event-stream", [Buffer.from('data: {"choices":[]}\n\ndata: [DONE]\n\n')])).toBeUndefined();
    expect(meter(shape, "application/json", [Buffer.from("{not json")])).toBeUndefined();
    expect(meter(shape, "text/plain", [fixture(`${name}.json`)])).toBeUndefined();
  });
});
