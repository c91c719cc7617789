/**
 * The official `openai` SDK's Realtime helper (`openai/realtime/ws`, OpenAIRealtimeWS) through
 * the relay, as an app on Node uses it: the relay token as the client's apiKey, the relay as its
 * baseURL. The SDK always dials `wss:`; the test hands ws a plain TCP connection to the relay.
 */
import { connect } from "node:net";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { MOCK_USAGE, startMockRealtime, type MockRealtime } from "./support/mock-realtime.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { waitFor } from "./support/wait.js";

let mock: MockRealtime;
let relay: TestRelay;

beforeAll(async () => {
  mock = await startMockRealtime();
  relay = await startRelay({ config: { providerBaseUrls: { openai: mock.url } } });
});
afterAll(async () => {
  await relay?.close();
  await mock?.close();
});

function realtime(secret: string, model: string): OpenAIRealtimeWS {
  const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1` });
  const { port } = new URL(relay.url);
  return new OpenAIRealtimeWS({ model, options: { createConnection: () => connect({ host: "127.0.0.1", port: Number(port) }) } as never }, client);
}

describe("OpenAIRealtimeWS", () => {
  it("a pinned token holds a text turn; the record has the usage; the provider sees the real key", async () => {
    const { secret, id } = await relay.issue({ limits: { models: ["gpt-realtime"] } });
    const rt = realtime(secret, "gpt-realtime");
    const errors: unknown[] = [];
    rt.on("error", (e) => errors.push(e));
    await new Promise((r) => rt.socket.once("open", r));
    rt.send({ type: "session.update", session: { type: "realtime", model: "gpt-realtime", output_modalities: ["text"] } } as never);
    rt.send({ type: "response.create" } as never);
    const done = await new Promise<{ response: { usage: { total_tokens: number } } }>((r) => rt.on("response.done" as never, r as never));
    expect(done.response.usage.total_tokens).toBe(MOCK_USAGE.total);
    rt.close();
    await new Promise((r) => rt.socket.once("close", r));
    expect(errors).toEqual([]);
    expect(mock.sessions.at(-1)!.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    const rec = await waitFor(() => relay.calls.find((c) => c.tokenId === id), 3000, "the record");
    expect(rec).toMatchObject({ outcome: Outcome.COMPLETE, usage: { totalTokens: MOCK_USAGE.total } });
  });

  it("a session.update to another model: the SDK's error handler gets the relay's error event (code, message), then 1008", async () => {
    const { secret } = await relay.issue({ limits: { models: ["gpt-realtime"] } });
    const rt = realtime(secret, "gpt-realtime");
    const errors: { message: string; error?: { code?: string } }[] = [];
    rt.on("error", (e) => errors.push(e as never));
    await new Promise((r) => rt.socket.once("open", r));
    rt.send({ type: "session.update", session: { type: "realtime", model: "gpt-4o-realtime-preview" } } as never);
    const code = await new Promise<number>((r) => rt.socket.once("close", r));
    expect(code).toBe(1008);
    expect(errors[0]?.error?.code).toBe("permission_denied");
    expect(errors[0]?.message).toMatch(/model not allowed/);
  });
});
