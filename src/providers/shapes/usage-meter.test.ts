/**
 * Usage read from recorded real-shape responses of OpenAI, Anthropic and Gemini, whole and
 * streamed, including SSE events split at every possible byte boundary; and usage out of range
 * (1e300, negative, fractional, strings) clamped and flagged (issue 18, finding 3).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { ApiShape, Usage } from "../types.js";
import { UsageFlag, usageFlags } from "../../usage/usage-flags.js";
import { anthropicShape, geminiShape, openaiShape } from "./index.js";
import { MAX_TOKENS_PER_FIELD, usageOf } from "./usage-meter.js";

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

describe("usage a provider reports out of range", () => {
  const OUT = UsageFlag.USAGE_OUT_OF_RANGE;
  const json = (shape: ApiShape, body: unknown) => meter(shape, "application/json", [Buffer.from(JSON.stringify(body))]);
  /** The body text verbatim: JSON.stringify cannot write 1e300 as a literal bigger than a double. */
  const raw = (shape: ApiShape, text: string) => meter(shape, "application/json", [Buffer.from(text)]);

  it("clamps each count to a safe integer in [0, MAX_TOKENS_PER_FIELD] and flags it", () => {
    const cases: [string, Usage & { flags?: number }][] = [
      ['{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":1e300}}', { promptTokens: 10, completionTokens: 5, totalTokens: 15, flags: OUT }],
      ['{"usage":{"prompt_tokens":-1,"completion_tokens":5,"total_tokens":-7}}', { promptTokens: 0, completionTokens: 5, totalTokens: 5, flags: OUT }],
      [
        '{"usage":{"prompt_tokens":"NaN","completion_tokens":2.5,"total_tokens":"1e300"}}',
        { promptTokens: 0, completionTokens: 3, totalTokens: 3, flags: OUT },
      ],
      [
        '{"usage":{"prompt_tokens":1e300,"completion_tokens":true,"total_tokens":{"n":1}}}',
        { promptTokens: MAX_TOKENS_PER_FIELD, completionTokens: 0, totalTokens: MAX_TOKENS_PER_FIELD, flags: OUT },
      ],
      [
        '{"usage":{"prompt_tokens":9007199254740993,"completion_tokens":0}}',
        { promptTokens: MAX_TOKENS_PER_FIELD, completionTokens: 0, totalTokens: MAX_TOKENS_PER_FIELD, flags: OUT },
      ],
      [
        '{"usage":{"prompt_tokens":10000000,"completion_tokens":10000000}}',
        { promptTokens: MAX_TOKENS_PER_FIELD, completionTokens: MAX_TOKENS_PER_FIELD, totalTokens: MAX_TOKENS_PER_FIELD, flags: OUT },
      ],
    ];
    for (const [text, want] of cases) expect(raw(openaiShape, text), text).toEqual(want);
  });

  it("leaves sane usage unflagged: missing or null counts are 0, a total above prompt + completion is kept", () => {
    expect(json(openaiShape, { usage: { prompt_tokens: 7, completion_tokens: null } })).toEqual({ promptTokens: 7, completionTokens: 0, totalTokens: 7 });
    expect(usageFlags(json(openaiShape, { usage: { prompt_tokens: 7 } }))).toBe(0);
    // Gemini's total also counts thinking tokens.
    expect(json(geminiShape, { usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 11, totalTokenCount: 40 } })).toEqual({
      promptTokens: 4,
      completionTokens: 11,
      totalTokens: 40,
    });
    expect(json(anthropicShape, { usage: { input_tokens: MAX_TOKENS_PER_FIELD, output_tokens: 0 } })).toEqual({
      promptTokens: MAX_TOKENS_PER_FIELD,
      completionTokens: 0,
      totalTokens: MAX_TOKENS_PER_FIELD,
    });
  });

  it("clamps Gemini and Anthropic the same way, and a streamed Anthropic flag survives later events", () => {
    expect(raw(geminiShape, '{"usageMetadata":{"promptTokenCount":-3,"candidatesTokenCount":1e300,"totalTokenCount":1e300}}')).toEqual({
      promptTokens: 0,
      completionTokens: MAX_TOKENS_PER_FIELD,
      totalTokens: MAX_TOKENS_PER_FIELD,
      flags: OUT,
    });
    const stream = [
      'data: {"type":"message_start","message":{"usage":{"input_tokens":1e300,"output_tokens":1}}}\n\n',
      'data: {"type":"message_delta","usage":{"output_tokens":"12"}}\n\n',
      'data: {"type":"message_delta","usage":{"output_tokens":12}}\n\n',
    ];
    const usage = meter(
      anthropicShape,
      "text/event-stream",
      stream.map((s) => Buffer.from(s)),
    );
    expect(usage).toEqual({ promptTokens: MAX_TOKENS_PER_FIELD, completionTokens: 12, totalTokens: MAX_TOKENS_PER_FIELD, flags: OUT });
  });

  it("usageOf is idempotent on what it returns", () => {
    const once = usageOf(1e300, -1, "x");
    expect(usageOf(once.promptTokens, once.completionTokens, once.totalTokens, usageFlags(once))).toEqual(once);
  });
});
