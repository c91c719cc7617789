// The HTTP compatibility layer with the real client SDKs (openai, @anthropic-ai/sdk) and fetch
// for Gemini: credentials swapped, streams passed through unbuffered, client aborts propagated.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { request } from "undici";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { expectNoSecret, h2Request } from "./support/http.js";
import { MOCK_PROMPT_TOKENS } from "./support/mock-provider.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay();
beforeEach(() => mock.reset());

const EXPECTED = "tok0 tok1 tok2 tok3 tok4 ";
const messages = [{ role: "user" as const, content: "hi" }];
const openai = (secret: string, provider = "openai") => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/${provider}/v1`, maxRetries: 0 });
const callsOf = (id: string) => relay.calls.filter((c) => c.tokenId === id);

describe("openai SDK", () => {
  it("non-streaming: upstream gets the real key, never the token", async () => {
    const { secret, id } = await relay.issue();
    const res = await openai(secret).chat.completions.create({ model: "gpt-mock", messages });
    expect(res.choices[0]?.message.content).toBe(EXPECTED);
    expect(res.usage?.total_tokens).toBe(MOCK_PROMPT_TOKENS + 5);
    const rec = mock.requests[0]!;
    expect(rec.path).toBe("/v1/chat/completions");
    expect(rec.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expectNoSecret(rec, secret);
    expect(JSON.parse(rec.body.toString()).messages).toEqual(messages);
    expect(callsOf(id)).toMatchObject([{ outcome: Outcome.COMPLETE, status: 200, usage: { totalTokens: 15 } }]);
  });

  it("streaming with include_usage", async () => {
    const { secret, id } = await relay.issue();
    const stream = await openai(secret).chat.completions.create({
      model: "gpt-mock",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? "";
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(EXPECTED);
    expect(usage?.completion_tokens).toBe(5);
    expect(mock.requests[0]!.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expectNoSecret(mock.requests[0], secret);
    expect(callsOf(id)).toMatchObject([{ outcome: Outcome.COMPLETE, usage: { promptTokens: 10, completionTokens: 5 } }]);
  });

  it("GET passes through (models.list)", async () => {
    const { secret } = await relay.issue();
    const page = await openai(secret).models.list();
    expect(page.data.map((m) => m.id)).toEqual(["gpt-4o", "gpt-4o-mini"]);
    expect(mock.requests[0]).toMatchObject({ method: "GET", path: "/v1/models" });
  });
});

describe("anthropic SDK", () => {
  it("messages.stream: text, final usage, x-api-key and anthropic-version upstream", async () => {
    const { secret, id } = await relay.issue({ provider: "anthropic" });
    const client = new Anthropic({ apiKey: secret, baseURL: `${relay.url}/api/anthropic`, maxRetries: 0 });
    const stream = client.messages.stream({ model: "claude-mock", max_tokens: 64, messages });
    let text = "";
    stream.on("text", (t) => (text += t));
    const final = await stream.finalMessage();
    expect(text).toBe(EXPECTED);
    expect(final.usage).toMatchObject({ input_tokens: MOCK_PROMPT_TOKENS, output_tokens: 5 });
    const rec = mock.requests[0]!;
    expect(rec.path).toBe("/v1/messages");
    expect(rec.headers["x-api-key"]).toBe(UPSTREAM_KEY);
    expect(rec.headers["anthropic-version"]).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(rec.headers.authorization).toBeUndefined();
    expectNoSecret(rec, secret);
    expect(callsOf(id)).toMatchObject([{ outcome: Outcome.COMPLETE, usage: { promptTokens: 10, completionTokens: 5 } }]);
  });

  it("adds the provider's default anthropic-version when the client sends none", async () => {
    const { secret } = await relay.issue({ provider: "anthropic" });
    const res = await fetch(`${relay.url}/api/anthropic/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": secret, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-mock", max_tokens: 8, messages }),
    });
    expect(res.status).toBe(200);
    expect(mock.requests[0]!.headers["anthropic-version"]).toBe("2023-06-01");
  });
});

describe("gemini via fetch", () => {
  const path = "/api/gemini/v1beta/models/gemini-mock";
  const body = JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] });

  it.each([
    ["x-goog-api-key header", (s: string) => [`${path}:generateContent`, { "x-goog-api-key": s }] as const],
    ["query ?key=", (s: string) => [`${path}:generateContent?key=${s}`, {}] as const],
  ])("token in %s", async (_name, make) => {
    const { secret } = await relay.issue({ provider: "gemini" });
    const [url, headers] = make(secret);
    const res = await fetch(relay.url + url, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body });
    expect(res.status).toBe(200);
    const json = (await res.json()) as { candidates: { content: { parts: { text: string }[] } }[] };
    expect(json.candidates[0]!.content.parts[0]!.text).toBe(EXPECTED);
    const rec = mock.requests[0]!;
    expect(rec.path).toBe("/v1beta/models/gemini-mock:generateContent");
    expect(rec.headers["x-goog-api-key"]).toBe(UPSTREAM_KEY);
    expect(rec.query.has("key")).toBe(false);
    expectNoSecret(rec, secret);
  });

  it("streamGenerateContent?alt=sse streams and keeps alt", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { models: ["gemini-mock"] } });
    const res = await fetch(`${relay.url}${path}:streamGenerateContent?alt=sse&key=${secret}`, { method: "POST", body });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const frames = (await res.text()).split("\n\n").filter((f) => f.startsWith("data: "));
    expect(frames).toHaveLength(5);
    const rec = mock.requests[0]!;
    expect(rec.query.get("alt")).toBe("sse");
    expect([...rec.query.keys()]).toEqual(["alt"]);
    expect(rec.headers["x-goog-api-key"]).toBe(UPSTREAM_KEY);
    expectNoSecret(rec, secret);
    expect(callsOf(id)).toMatchObject([{ model: "gemini-mock", outcome: Outcome.COMPLETE, usage: { totalTokens: 15 } }]);
  });
});

describe("streaming behaviour", () => {
  it("passes SSE through unbuffered, chunk for chunk", async () => {
    const { secret } = await relay.issue();
    const res = await request(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-mock-chunks": "4", "x-mock-delay-ms": "150" },
      body: JSON.stringify({ model: "gpt-mock", messages, stream: true }),
    });
    const headersAt = performance.now();
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("text/event-stream");
    const arrivals: { at: number; frames: number }[] = [];
    for await (const chunk of res.body) {
      arrivals.push({ at: performance.now() - headersAt, frames: (chunk.toString().match(/^data: /gm) ?? []).length });
    }
    // 4 content frames 150 ms apart, then [DONE]: the usage frame the relay asks for on every
    // OpenAI stream (stream_options.include_usage) is metered, not forwarded (issue 21.8b).
    expect(arrivals.reduce((n, a) => n + a.frames, 0)).toBe(5);
    expect(arrivals[0]!.at).toBeLessThan(100);
    expect(arrivals.at(-1)!.at).toBeGreaterThan(450);
    // Spread out, one frame per read: frames sent 150 ms apart arrive well apart (slack for a busy CI).
    const times = arrivals
      .filter((a) => a.frames > 0)
      .map((a) => a.at)
      .slice(0, 4);
    expect(times).toHaveLength(4);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThan(60);
  });

  it("over h2c too: SSE streamed, token stripped, no pseudo-headers forwarded", async () => {
    const { secret } = await relay.issue();
    const res = await h2Request(relay.url, {
      method: "POST",
      path: "/api/openai/v1/chat/completions",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-mock-chunks": "3", "x-mock-delay-ms": "150" },
      body: JSON.stringify({ model: "gpt-mock", messages, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toContain("text/event-stream");
    expect(res.body.toString()).toContain("tok2");
    expect(res.arrivals[0]).toBeLessThan(100);
    expect(res.arrivals.at(-1)! - res.arrivals[0]!).toBeGreaterThan(250);
    const rec = mock.requests[0]!;
    expect(Object.keys(rec.headers).filter((h) => h.startsWith(":"))).toEqual([]);
    expect(rec.headers.host).toBe(new URL(mock.url).host);
    expect(rec.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expectNoSecret(rec, secret);
  });

  it("a client leaving mid-stream aborts the upstream request; outcome TRUNCATED", async () => {
    const { secret, id } = await relay.issue();
    const stream = await openai(secret).chat.completions.create(
      { model: "gpt-mock", messages, stream: true },
      { headers: { "x-mock-chunks": "100", "x-mock-delay-ms": "50" } },
    );
    let got = "";
    for await (const c of stream) {
      got += c.choices[0]?.delta.content ?? "";
      if (got.includes("tok1")) break; // the SDK aborts the response on break
    }
    const aborted = await mock.waitForAbort("/v1/chat/completions", 3000);
    expect(aborted.aborted).toBe(true);
    await vi.waitFor(() => expect(callsOf(id)).toHaveLength(1), { timeout: 3000 });
    expect(callsOf(id)[0]!.outcome).toBe(Outcome.TRUNCATED);
    const token = await relay.tokens.getToken({ id });
    expect(token.token?.callsUsed).toBe(1n);
  });
});

describe("response fidelity", () => {
  it("a non-streaming body arrives byte for byte, response headers filtered", async () => {
    const { secret } = await relay.issue();
    const payload = {
      id: "chatcmpl-exact",
      object: "chat.completion",
      created: 1,
      model: "gpt-mock",
      choices: [{ index: 0, message: { role: "assistant", content: 'ünïcødé 🚀 "quoted" \\ \n\t\u2028 end' }, finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      padding: "x".repeat(100_000),
    };
    mock.failNext(200, payload, {
      "x-request-id": "req-exact-1",
      "set-cookie": "upstream=1",
      "openai-processing-ms": "12",
      connection: "keep-alive, x-upstream-hop",
      "x-upstream-hop": "1",
    });
    const res = await request(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-mock", messages }),
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(bytes.equals(Buffer.from(JSON.stringify(payload)))).toBe(true);
    expect(res.headers["x-request-id"]).toBe("req-exact-1");
    expect(res.headers["openai-processing-ms"]).toBe("12");
    expect(res.headers["set-cookie"]).toBeUndefined();
    expect(res.headers["x-upstream-hop"]).toBeUndefined();
    expect(relay.calls.at(-1)?.usage).toEqual({ promptTokens: 3, completionTokens: 4, totalTokens: 7 });
  });
});

describe("custom providers", () => {
  it("HEADER style puts the key in the named header, below the base path, with default headers", async () => {
    await relay.admin.upsertProvider({
      provider: {
        id: "custom-h",
        baseUrl: `${mock.url}/custom`,
        authStyle: AuthStyle.HEADER,
        authName: "X-Custom-Key",
        shape: ApiShape.OPENAI,
        defaultHeaders: { "x-tenant": "acme" },
      },
    });
    const { secret } = await relay.issue({ provider: "custom-h" });
    const res = await openai(secret, "custom-h").chat.completions.create({ model: "m", messages }, { headers: { "x-custom-key": "client-forged" } });
    expect(res.choices[0]?.message.content).toBe(EXPECTED);
    const rec = mock.requests[0]!;
    expect(rec.path).toBe("/custom/v1/chat/completions");
    expect(rec.headers["x-custom-key"]).toBe(UPSTREAM_KEY);
    expect(rec.headers["x-tenant"]).toBe("acme");
    expect(rec.headers.authorization).toBeUndefined();
    expectNoSecret(rec, secret);
  });

  it("QUERY style puts the key in the named query parameter, replacing a client's", async () => {
    await relay.admin.upsertProvider({
      provider: { id: "custom-q", baseUrl: mock.url, authStyle: AuthStyle.QUERY, authName: "api_key", shape: ApiShape.OPENAI },
    });
    const { secret } = await relay.issue({ provider: "custom-q" });
    const res = await fetch(`${relay.url}/api/custom-q/v1/chat/completions?api_key=forged&keep=1&token=${secret}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages }),
    });
    expect(res.status).toBe(200);
    const rec = mock.requests[0]!;
    expect(rec.query.getAll("api_key")).toEqual([UPSTREAM_KEY]);
    expect(rec.query.get("keep")).toBe("1");
    expect(rec.query.has("token")).toBe(false);
    expect(rec.headers.authorization).toBeUndefined();
    expectNoSecret(rec, secret);
  });
});
