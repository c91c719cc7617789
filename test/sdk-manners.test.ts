// Issue 21.8: the relay's answers behave with the official SDKs. A refusal no retry can cure
// (exhausted, revoked) says `x-should-retry: false` and costs one request; an rpm 429 is still
// retried per the SDK's rules; the usage-only chunk the relay asked for itself is metered but
// not forwarded; `models.list()` on a model-pinned token lists the pinned models.
import OpenAI from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { RelayError } from "../src/errors.js";
import { isFinal } from "../src/http/render-error.js";
import { ModelListFilter, UsageChunkFilter } from "../src/relay/answer-filters.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ mock: { chunkDelayMs: 0 } });
beforeEach(() => mock.reset());

const messages = [{ role: "user" as const, content: "hi" }];

/** An openai client (default retries unless told) counting each HTTP request it makes. */
function client(secret: string, maxRetries?: number) {
  const sent: Response[] = [];
  const c = new OpenAI({
    apiKey: secret,
    baseURL: `${relay.url}/api/openai/v1`,
    timeout: 10_000,
    ...(maxRetries === undefined ? {} : { maxRetries }),
    fetch: async (url: RequestInfo | URL, init?: RequestInit) => {
      const res = await fetch(url, init);
      sent.push(res);
      return res;
    },
  });
  return { c, sent };
}

describe("8a: no retries into a refusal that cannot change", () => {
  it("an exhausted token: one request, x-should-retry: false", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 1n } });
    await client(secret).c.chat.completions.create({ model: "gpt-mock", messages });
    const { c, sent } = client(secret);
    const started = performance.now();
    await expect(c.chat.completions.create({ model: "gpt-mock", messages })).rejects.toMatchObject({ status: 429 });
    expect(sent.length).toBe(1);
    expect(sent[0]!.headers.get("x-should-retry")).toBe("false");
    expect(mock.requests.length).toBe(1);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("a revoked token: one request, x-should-retry: false", async () => {
    const { secret, id } = await relay.issue();
    await relay.tokens.revokeToken({ id });
    const { c, sent } = client(secret);
    await expect(c.chat.completions.create({ model: "gpt-mock", messages })).rejects.toMatchObject({ status: 401 });
    expect(sent.length).toBe(1);
    expect(sent[0]!.headers.get("x-should-retry")).toBe("false");
    expect(mock.requests.length).toBe(0);
  });

  it("an rpm 429 keeps Retry-After, no x-should-retry, and the SDK retries it after that wait", async () => {
    // rpm 60: a burst of 60, then one call a second, so the Retry-After is 1 s.
    const { secret } = await relay.issue({ limits: { rpm: 60 } });
    const auth = { authorization: `Bearer ${secret}` };
    const burst = await Promise.all(Array.from({ length: 60 }, () => fetch(`${relay.url}/api/openai/v1/models`, { headers: auth }).then((r) => r.status)));
    expect(burst.every((st) => st === 200)).toBe(true);
    const { c, sent } = client(secret, 1);
    const started = performance.now();
    const page = await c.models.list();
    expect(page.data.length).toBeGreaterThan(0);
    expect(sent.map((r) => r.status)).toEqual([429, 200]);
    expect(sent[0]!.headers.get("retry-after")).toBe("1");
    expect(sent[0]!.headers.get("x-should-retry")).toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
  }, 15_000);
});

describe("8b: the relay's own usage chunk is metered, not forwarded", () => {
  it("client did not ask for include_usage: no chunk with empty choices, usage still recorded", async () => {
    const { secret, id } = await relay.issue();
    const stream = await client(secret).c.chat.completions.create({ model: "gpt-mock", messages, stream: true });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.filter((ch) => ch.choices.length === 0)).toEqual([]);
    expect(chunks.map((ch) => ch.choices[0]!.delta.content ?? "").join("")).toBe("tok0 tok1 tok2 tok3 tok4 ");
    expect(JSON.parse(mock.requests[0]!.body.toString()).stream_options).toEqual({ include_usage: true });
    expect(relay.calls.filter((r) => r.tokenId === id)).toMatchObject([{ usage: { promptTokens: 10, completionTokens: 5 } }]);
  });

  it("client asked for include_usage: the usage chunk is forwarded", async () => {
    const { secret } = await relay.issue();
    const stream = await client(secret).c.chat.completions.create({ model: "gpt-mock", messages, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const usageOnly = chunks.filter((ch) => ch.choices.length === 0);
    expect(usageOnly).toHaveLength(1);
    expect(usageOnly[0]!.usage?.completion_tokens).toBe(5);
  });
});

describe("8c: models.list() on a model-pinned token", () => {
  it("answers the list filtered to the pinned models", async () => {
    const { secret } = await relay.issue({ limits: { models: ["gpt-4o-mini", "gpt-mock"] } });
    const page = await client(secret, 0).c.models.list();
    expect(page.data.map((m) => m.id)).toEqual(["gpt-4o-mini"]);
    expect(mock.requests.map((r) => r.path)).toEqual(["/v1/models"]);
  });

  it("a model path still needs a pinned model", async () => {
    const { secret } = await relay.issue({ limits: { models: ["gpt-4o-mini"] } });
    await expect(client(secret, 0).c.models.retrieve("gpt-4o")).rejects.toMatchObject({ status: 403 });
  });
});

describe("UsageChunkFilter", () => {
  const usage = 'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1}}';
  const stream = `data: {"choices":[{"delta":{}}]}\r\n\r\n: keep\n\n${usage}\r\n\r\ndata: [DONE]\n\n`;
  const kept = `data: {"choices":[{"delta":{}}]}\r\n\r\n: keep\n\ndata: [DONE]\n\n`;
  const run = (parts: string[]): string => {
    const f = new UsageChunkFilter();
    return parts.map((p) => f.feed(Buffer.from(p)).toString()).join("") + f.end().toString();
  };

  it("drops only the usage-only frame, whole or split anywhere, keeping other bytes as they were", () => {
    expect(run([stream])).toBe(kept);
    expect(run([...stream])).toBe(kept);
    for (let cut = 1; cut < stream.length; cut++) expect(run([stream.slice(0, cut), stream.slice(cut)])).toBe(kept);
  });

  it("holds back nothing past a complete frame", () => {
    const f = new UsageChunkFilter();
    expect(f.feed(Buffer.from('data: {"choices":[{}]}\n\ndata: {"cho')).toString()).toBe('data: {"choices":[{}]}\n\n');
  });
});

describe("decisions", () => {
  it("x-should-retry: false only for refusals no retry cures", () => {
    expect(isFinal(new RelayError("calls_exhausted", "x"))).toBe(true);
    expect(isFinal(new RelayError("budget_exhausted", "x"))).toBe(true);
    expect(isFinal(new RelayError("unauthenticated", "x"))).toBe(true);
    // A DPoP challenge (a fresh nonce) invites a retry with a new proof.
    expect(isFinal(new RelayError("unauthenticated", "x", { headers: { "www-authenticate": 'DPoP error="use_dpop_nonce"' } }))).toBe(false);
    expect(isFinal(new RelayError("rate_limited", "x", { retryAfter: 1 }))).toBe(false);
    expect(isFinal(new RelayError("unavailable", "x"))).toBe(false);
  });

  it("a model list that cannot be read lists no model (fails closed)", () => {
    const run = (body: string) => {
      const f = new ModelListFilter(new Set(["a"]));
      expect(f.feed(Buffer.from(body)).length).toBe(0);
      return JSON.parse(f.end().toString()) as { data: { id: string }[] };
    };
    expect(run('{"object":"list","data":[{"id":"a"},{"id":"b"}]}').data).toEqual([{ id: "a" }]);
    expect(run('{"object":"list","data":[{"id":"a"}').data).toEqual([]);
    expect(run('{"models":[{"id":"a"}]}').data).toEqual([]);
  });
});
