// Exercises the mock provider with the real provider SDKs, so its wire formats stay honest.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MOCK_PROMPT_TOKENS, startMockProvider, type MockProvider } from "./mock-provider.js";

let mock: MockProvider;
beforeAll(async () => {
  mock = await startMockProvider();
});
afterEach(() => mock.reset());
afterAll(() => mock.close());

const EXPECTED = "tok0 tok1 tok2 tok3 tok4 ";

/** Parses an SSE body into its `data:` payloads. */
function sseData(raw: string): string[] {
  return raw
    .split("\n\n")
    .filter(Boolean)
    .map((f) =>
      f
        .split("\n")
        .find((l) => l.startsWith("data: "))!
        .slice(6),
    );
}

describe("OpenAI", () => {
  const client = () => new OpenAI({ baseURL: mock.url + "/v1", apiKey: "sk-test", maxRetries: 0 });

  it("non-streaming chat completion", async () => {
    const r = await client().chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe("gpt-4o-mini");
    expect(r.choices[0]!.message.content).toBe(EXPECTED);
    expect(r.usage).toEqual({ prompt_tokens: MOCK_PROMPT_TOKENS, completion_tokens: 5, total_tokens: MOCK_PROMPT_TOKENS + 5 });
    const rec = mock.requests[0]!;
    expect(rec.method).toBe("POST");
    expect(rec.path).toBe("/v1/chat/completions");
    expect(rec.headers.authorization).toBe("Bearer sk-test");
    expect(JSON.parse(rec.body.toString()).messages[0].content).toBe("hi");
    expect(rec.aborted).toBe(false);
  });

  it("streaming chat completion with include_usage", async () => {
    const stream = await client().chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = "";
    const chunks = [];
    for await (const c of stream) {
      chunks.push(c);
      content += c.choices[0]?.delta.content ?? "";
    }
    expect(content).toBe(EXPECTED);
    expect(chunks).toHaveLength(6);
    expect(chunks[4]!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks[5]!.choices).toEqual([]);
    expect(chunks[5]!.usage?.completion_tokens).toBe(5);
  });

  it("lists models", async () => {
    const models = [];
    for await (const m of client().models.list()) models.push(m.id);
    expect(models).toContain("gpt-4o-mini");
  });

  it("honours x-mock-chunks and omits usage without include_usage", async () => {
    const res = await fetch(mock.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", "x-mock-chunks": "2" },
      body: JSON.stringify({ model: "m", messages: [], stream: true }),
    });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const data = sseData(await res.text());
    expect(data).toHaveLength(3);
    expect(data[2]).toBe("[DONE]");
    expect(JSON.parse(data[1]!).choices[0].delta.content).toBe("tok1 ");
  });
});

describe("Anthropic", () => {
  const client = () => new Anthropic({ baseURL: mock.url, apiKey: "sk-ant-test", maxRetries: 0 });
  const params = { model: "claude-mock-model", max_tokens: 64, messages: [{ role: "user" as const, content: "hi" }] };

  it("non-streaming message", async () => {
    const m = await client().messages.create(params);
    expect(m.type).toBe("message");
    expect(m.model).toBe("claude-mock-model");
    expect(m.content).toEqual([{ type: "text", text: EXPECTED }]);
    expect(m.usage).toEqual({ input_tokens: MOCK_PROMPT_TOKENS, output_tokens: 5 });
    expect(mock.requests[0]!.path).toBe("/v1/messages");
    expect(mock.requests[0]!.headers["x-api-key"]).toBe("sk-ant-test");
  });

  it("messages.stream collects text and final usage", async () => {
    const stream = client().messages.stream(params);
    let text = "";
    stream.on("text", (t) => {
      text += t;
    });
    const final = await stream.finalMessage();
    expect(text).toBe(EXPECTED);
    expect(final.content).toEqual([{ type: "text", text: EXPECTED }]);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.input_tokens).toBe(MOCK_PROMPT_TOKENS);
    expect(final.usage.output_tokens).toBe(5);
  });
});

describe("Gemini", () => {
  const body = JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] });
  const post = (p: string) => fetch(mock.url + p, { method: "POST", headers: { "content-type": "application/json", "x-goog-api-key": "g" }, body });

  it("generateContent", async () => {
    const res = await post("/v1beta/models/gemini-2.0-flash:generateContent");
    const j = await res.json();
    expect(j.candidates[0].content.parts[0].text).toBe(EXPECTED);
    expect(j.usageMetadata).toEqual({ promptTokenCount: MOCK_PROMPT_TOKENS, candidatesTokenCount: 5, totalTokenCount: MOCK_PROMPT_TOKENS + 5 });
    expect(j.modelVersion).toBe("gemini-2.0-flash");
  });

  it("streamGenerateContent?alt=sse", async () => {
    const res = await post("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const events = sseData(await res.text()).map((d) => JSON.parse(d));
    expect(events).toHaveLength(5);
    expect(events.map((e) => e.candidates[0].content.parts[0].text).join("")).toBe(EXPECTED);
    expect(events[3].usageMetadata).toBeUndefined();
    expect(events[4].usageMetadata.candidatesTokenCount).toBe(5);
    expect(mock.requests[0]!.query.get("alt")).toBe("sse");
  });
});

describe("control and error paths", () => {
  it("detects a client abort mid-stream", async () => {
    const ac = new AbortController();
    const res = await fetch(mock.url + "/v1/chat/completions", {
      method: "POST",
      signal: ac.signal,
      headers: { "content-type": "application/json", "x-mock-delay-ms": "50", "x-mock-chunks": "50" },
      body: JSON.stringify({ model: "m", messages: [], stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    const aborted = mock.waitForAbort("/chat/completions", 2000);
    ac.abort();
    const rec = await aborted;
    expect(rec.aborted).toBe(true);
    expect(rec).toBe(mock.requests[0]);
  });

  it("failNext overrides responses once each, in order", async () => {
    mock.failNext(429, { error: { message: "slow down" } }, { "retry-after": "1" });
    mock.failNext(500, { error: { message: "boom" } });
    const client = new OpenAI({ baseURL: mock.url + "/v1", apiKey: "k", maxRetries: 0 });
    const call = () => client.chat.completions.create({ model: "m", messages: [] });
    await expect(call()).rejects.toMatchObject({ status: 429, message: expect.stringContaining("slow down") });
    await expect(call()).rejects.toMatchObject({ status: 500 });
    await expect(call()).resolves.toMatchObject({ object: "chat.completion" });
  });

  it("x-mock-status, unknown routes and bad JSON", async () => {
    const forced = await fetch(mock.url + "/v1/messages", { method: "POST", headers: { "x-mock-status": "503" }, body: "{}" });
    expect(forced.status).toBe(503);
    expect((await forced.json()).error.type).toBe("server_error");
    const missing = await fetch(mock.url + "/nope");
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: { message: "not found", type: "invalid_request_error" } });
    const bad = await fetch(mock.url + "/v1/chat/completions", { method: "POST", body: "{not json" });
    expect(bad.status).toBe(400);
    expect(mock.requests.map((r) => r.body.toString())).toEqual(["{}", "", "{not json"]);
  });
});
