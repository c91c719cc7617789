/**
 * The framing readers of relayed WebSocket sessions (src/realtime/openai-realtime.ts,
 * gemini-live.ts): usage summed per response (OpenAI) or per turn with the last report of a
 * turn winning (Gemini Live repeats it), models named by client messages found however the key
 * is spelt, and the error events in each provider's shape.
 */
import { describe, expect, it } from "vitest";
import { RelayError } from "../src/errors.js";
import { geminiShape } from "../src/providers/shapes/gemini.js";
import { openaiShape } from "../src/providers/shapes/openai.js";
import { UNREADABLE_MODEL } from "../src/realtime/framing.js";
import { geminiLive } from "../src/realtime/gemini-live.js";
import { openaiRealtime } from "../src/realtime/openai-realtime.js";

const msg = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

describe("OpenAI Realtime", () => {
  it("sums response.done usage; busy between response.created and response.done", () => {
    const r = openaiRealtime.reader();
    r.server(msg({ type: "response.created", response: {} }));
    expect(r.busy()).toBe(true);
    r.server(msg({ type: "response.output_audio.delta", delta: "AAAA" }));
    r.server(msg({ type: "response.done", response: { usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 } } }));
    r.server(msg({ type: "response.done", response: { usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 } } }));
    expect(r.busy()).toBe(false);
    expect(r.usage()).toEqual({ promptTokens: 8, completionTokens: 4, totalTokens: 12 });
  });

  it("finds session.update's model, also under an escaped key; other messages name none", () => {
    const r = openaiRealtime.reader();
    expect(r.clientModel(msg({ type: "session.update", session: { model: "gpt-x" } }))).toBe("gpt-x");
    expect(r.clientModel(Buffer.from('{"type":"session.update","session":{"mod\\u0065l":"gpt-y"}}'))).toBe("gpt-y");
    expect(r.clientModel(msg({ type: "session.update", session: { model: 42 } }))).toBe(UNREADABLE_MODEL);
    expect(r.clientModel(msg({ type: "input_audio_buffer.append", audio: "AAAA" }))).toBeUndefined();
    expect(r.clientModel(msg({ type: "session.update", session: { instructions: "no model here" } }))).toBeUndefined();
  });

  it("reads the query's model and Azure's deployment; errors are `error` events", () => {
    expect(openaiRealtime.queryModels(new URLSearchParams("model=a&deployment=b"))).toEqual(["a", "b"]);
    const event = JSON.parse(openaiRealtime.errorEvent(new RelayError("budget_exhausted", "spent"), openaiShape));
    expect(event).toMatchObject({ type: "error", error: { code: "budget_exhausted", message: "spent", type: "insufficient_quota" } });
  });
});

describe("Gemini Live", () => {
  it("the last usage report of a turn counts; turns add up", () => {
    const r = geminiLive.reader();
    r.server(msg({ setupComplete: {} }));
    r.server(msg({ serverContent: { modelTurn: { parts: [{ text: "a" }] } } }));
    expect(r.busy()).toBe(true);
    r.server(
      msg({ serverContent: { modelTurn: { parts: [{ text: "b" }] } }, usageMetadata: { promptTokenCount: 10, responseTokenCount: 2, totalTokenCount: 12 } }),
    );
    r.server(msg({ serverContent: { turnComplete: true }, usageMetadata: { promptTokenCount: 10, responseTokenCount: 5, totalTokenCount: 15 } }));
    expect(r.busy()).toBe(false);
    // Usage after turnComplete still belongs to that turn.
    r.server(msg({ usageMetadata: { promptTokenCount: 10, responseTokenCount: 6, totalTokenCount: 16 } }));
    expect(r.usage()?.totalTokens).toBe(16);
    r.server(msg({ serverContent: { modelTurn: { parts: [{ text: "c" }] } } }));
    r.server(msg({ serverContent: { turnComplete: true }, usageMetadata: { promptTokenCount: 20, responseTokenCount: 4, totalTokenCount: 24 } }));
    expect(r.usage()).toEqual({ promptTokens: 30, completionTokens: 10, totalTokens: 40 });
  });

  it("reads setup's model as a pin names it; a setup without one is unreadable", () => {
    const r = geminiLive.reader();
    expect(r.clientModel(msg({ setup: { model: "models/gemini-live" } }))).toBe("gemini-live");
    expect(r.clientModel(msg({ setup: { model: "tunedModels/t1" } }))).toBe("tunedModels/t1");
    expect(r.clientModel(msg({ setup: {} }))).toBe(UNREADABLE_MODEL);
    expect(r.clientModel(msg({ realtimeInput: { audio: { data: "AAAA" } } }))).toBeUndefined();
    expect(JSON.parse(geminiLive.errorEvent(new RelayError("permission_denied", "no"), geminiShape))).toEqual({
      error: { code: 403, message: "no", status: "PERMISSION_DENIED" },
    });
  });
});
