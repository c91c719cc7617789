/**
 * Probes of the money side of relayed voice sessions (src/realtime/*), with the real `ws`
 * client against the mock Realtime provider: Gemini Live names its model only in its `setup`
 * message, so a dollar budget must price the session by that model (not refuse it as
 * unpriced, nor let it run free); Live's usage must be read with its audio and thinking parts,
 * which cost more than text; and a session must close when its dollar reservation is spent,
 * not only its LLM-token one.
 */
import { describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { geminiLive } from "../src/realtime/gemini-live.js";
import { openaiRealtime } from "../src/realtime/openai-realtime.js";
import { MOCK_USAGE } from "./support/mock-realtime.js";
import { openSession, refusedUpgrade, wsUrl } from "./support/realtime-client.js";
import { waitFor } from "./support/wait.js";
import { useRealtimeRelay } from "./support/use-realtime-relay.js";

const LIVE = "/api/gemini/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const REALTIME = "/api/openai/v1/realtime";
const msg = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

const { relay, mock } = useRealtimeRelay();

const recordOf = (id: string) => waitFor(() => relay.calls.find((c) => c.tokenId === id), 3000, "the session's record");

describe("Gemini Live under a dollar budget", () => {
  it("a priced model named in setup opens, and the session is priced by it", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { budgetMicroUsd: 1_000_000n } });
    const s = await openSession(wsUrl(relay.url, `${LIVE}?key=${secret}`));
    s.send({ setup: { model: "models/gemini-2.0-flash" } });
    await s.nextWhere((e) => "setupComplete" in e || "error" in e);
    expect(
      s.events.find((e) => "error" in e),
      "no error event",
    ).toBeUndefined();
    s.send({ clientContent: { turns: [{ role: "user", parts: [{ text: "hi" }] }], turnComplete: true } });
    await s.nextWhere((e) => (e.serverContent as { turnComplete?: boolean } | undefined)?.turnComplete === true);
    s.ws.close(1000);
    await s.closed;
    const rec = await recordOf(id);
    expect(rec).toMatchObject({ outcome: Outcome.COMPLETE, model: "gemini-2.0-flash" });
    // gemini-2.0-flash: $0.10 in, $0.40 out per million: 10 in + 5 out = 3 micro-dollars.
    expect(rec.costMicroUsd).toBe(Math.round((MOCK_USAGE.input * 0.1 + MOCK_USAGE.output * 0.4) * 1e6) / 1e6 > 0 ? 3 : 0);
  });

  it("a model without a price is refused in the Gemini shape (1008), nothing reaches the provider, the call is given back", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { budgetMicroUsd: 1_000_000n, maxCalls: 3n } });
    const before = mock.sessions.length;
    const s = await openSession(wsUrl(relay.url, `${LIVE}?key=${secret}`));
    s.send({ setup: { model: "models/no-such-price" } });
    const error = await s.nextWhere((e) => "error" in e);
    expect(error.error).toMatchObject({ code: 403, status: "PERMISSION_DENIED" });
    expect((await s.closed).code).toBe(1008);
    expect(mock.sessions.length).toBe(before);
    expect(await recordOf(id)).toMatchObject({ outcome: Outcome.REFUNDED, status: 403 });
  });

  it("a spent dollar budget closes the session with 4429 before the provider is dialled", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { budgetMicroUsd: 1n } });
    // Spend it: the first session is charged 3 micro-dollars.
    const s1 = await openSession(wsUrl(relay.url, `${LIVE}?key=${secret}`));
    s1.send({ setup: { model: "models/gemini-2.0-flash" } });
    await s1.nextWhere((e) => "setupComplete" in e);
    s1.send({ clientContent: { turns: [{ role: "user", parts: [{ text: "hi" }] }], turnComplete: true } });
    await s1.nextWhere((e) => (e.serverContent as { turnComplete?: boolean } | undefined)?.turnComplete === true);
    s1.ws.close(1000);
    await s1.closed;
    await recordOf(id);
    const before = mock.sessions.length;
    const s2 = await openSession(wsUrl(relay.url, `${LIVE}?key=${secret}`));
    s2.send({ setup: { model: "models/gemini-2.0-flash" } });
    const error = await s2.nextWhere((e) => "error" in e);
    expect(error.error).toMatchObject({ code: 429 });
    expect((await s2.closed).code).toBe(4429);
    expect(mock.sessions.length).toBe(before);
  });
});

describe("OpenAI Realtime under a dollar budget", () => {
  it("an unpriced model is refused at the upgrade (403 in OpenAI's shape), as before", async () => {
    const { secret } = await relay.issue({ limits: { budgetMicroUsd: 1_000_000n } });
    const r = await refusedUpgrade(wsUrl(relay.url, `${REALTIME}?model=no-such-price`), ["realtime", `openai-insecure-api-key.${secret}`]);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error.message).toMatch(/no price/);
  });
});

describe("OpenAI Realtime: the priced model under a dollar budget", () => {
  const open = async () => {
    const { secret } = await relay.issue({ limits: { budgetMicroUsd: 1_000_000n } });
    const s = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-4o-mini-realtime-preview`), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    return s;
  };

  it("a session.update to another (dearer) model is refused with 1008 before the provider sees it: the session is priced by its model", async () => {
    const s = await open();
    const seen = mock.sessions.at(-1)!;
    s.send({ type: "session.update", session: { type: "realtime", model: "gpt-realtime" } });
    expect((await s.next("error")).error).toMatchObject({ code: "permission_denied" });
    expect((await s.closed).code).toBe(1008);
    expect(seen.received).toEqual([]);
  });

  it("a session.update naming the session's own model passes", async () => {
    const s = await open();
    s.send({ type: "session.update", session: { type: "realtime", model: "gpt-4o-mini-realtime-preview", instructions: "hi" } });
    await s.next("session.updated");
    s.ws.close(1000);
    expect((await s.closed).code).toBe(1000);
  });
});

describe("usage read from the session's events", () => {
  it("Gemini Live: audio by modality, thinking as output, tool-use prompt as input", () => {
    const r = geminiLive.reader();
    r.server(msg({ serverContent: { modelTurn: { parts: [] } } }));
    r.server(
      msg({
        serverContent: { turnComplete: true },
        usageMetadata: {
          promptTokenCount: 100,
          toolUsePromptTokenCount: 20,
          responseTokenCount: 50,
          thoughtsTokenCount: 30,
          totalTokenCount: 200,
          promptTokensDetails: [
            { modality: "AUDIO", tokenCount: 80 },
            { modality: "TEXT", tokenCount: 20 },
          ],
          responseTokensDetails: [{ modality: "AUDIO", tokenCount: 50 }],
        },
      }),
    );
    expect(r.usage()).toMatchObject({
      promptTokens: 120,
      completionTokens: 80,
      totalTokens: 200,
      audioInputTokens: 80,
      audioOutputTokens: 50,
      reasoningTokens: 30,
    });
  });

  it("OpenAI Realtime: audio parts of response.done are kept", () => {
    const r = openaiRealtime.reader();
    r.server(
      msg({
        type: "response.done",
        response: {
          usage: {
            input_tokens: 100,
            output_tokens: 50,
            total_tokens: 150,
            input_token_details: { audio_tokens: 60, cached_tokens: 10 },
            output_token_details: { audio_tokens: 40 },
          },
        },
      }),
    );
    expect(r.usage()).toMatchObject({ promptTokens: 100, completionTokens: 50, audioInputTokens: 60, audioOutputTokens: 40, cachedTokens: 10 });
  });
});
