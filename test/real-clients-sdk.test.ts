/**
 * The HTTP layer as the official SDKs (openai, @anthropic-ai/sdk) call it, with their own
 * habits: retries, timeouts and aborts, raw responses, uploads, the errors they parse, and
 * endpoints beside chat (count_tokens, files, the Responses API).
 */
import Anthropic, { type APIError as AnthropicAPIError } from "@anthropic-ai/sdk";
import OpenAI, { type APIError, toFile } from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const MAX_BODY = 64 * 1024;
const { relay, mock } = useRelay({ config: { maxBodyBytes: MAX_BODY, maxUploadBytes: 2 * MAX_BODY } });
beforeEach(() => {
  mock.reset();
  mock.behave(undefined);
});

const messages = [{ role: "user" as const, content: "hi" }];
const openai = (secret: string, opts: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) =>
  new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, ...opts });
const anthropic = (secret: string, opts: Partial<ConstructorParameters<typeof Anthropic>[0]> = {}) =>
  new Anthropic({ apiKey: secret, baseURL: `${relay.url}/api/anthropic`, maxRetries: 0, ...opts });
const callsOf = (id: string) => relay.calls.filter((c) => c.tokenId === id);
async function settled(id: string, n: number): Promise<void> {
  for (let i = 0; i < 100 && callsOf(id).length < n; i++) await sleep(20);
}

describe("openai SDK", () => {
  it("a stream aborted mid-way: TRUNCATED once, the upstream request aborted", async () => {
    const { secret, id } = await relay.issue();
    const stream = await openai(secret).chat.completions.create(
      { model: "gpt-mock", messages, stream: true },
      { headers: { "x-mock-chunks": "100", "x-mock-delay-ms": "20" } },
    );
    let n = 0;
    // The SDK ends its iteration quietly on its own abort.
    for await (const _ of stream) if (++n === 3) stream.controller.abort();
    expect(n).toBe(3);
    await mock.waitForAbort("/chat/completions");
    await settled(id, 1);
    await sleep(100);
    expect(callsOf(id).map((c) => c.outcome)).toEqual([Outcome.TRUNCATED]);
  });

  it("a provider that resets mid-stream: the SDK's iteration throws, the call TRUNCATED", async () => {
    const { secret, id } = await relay.issue();
    const stream = await openai(secret).chat.completions.create(
      { model: "gpt-mock", messages, stream: true },
      { headers: { "x-mock-chunks": "20", "x-mock-reset": "mid-stream" } },
    );
    let text = "";
    const err = await (async () => {
      for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(text).toBe("tok0 ");
    await settled(id, 1);
    expect(callsOf(id).map((c) => c.outcome)).toEqual([Outcome.TRUNCATED]);
  });

  it("withResponse: the provider's request id and the relay's", async () => {
    const { secret } = await relay.issue();
    mock.behave(() => ({ headers: { "x-request-id": "req_upstream_1" } }));
    mock.failNext(200, { id: "x", object: "chat.completion", created: 1, model: "gpt-mock", choices: [] }, { "x-request-id": "req_upstream_1" });
    const { response, request_id } = await openai(secret).chat.completions.create({ model: "gpt-mock", messages }).withResponse();
    expect(request_id).toBe("req_upstream_1");
    expect(response.headers.get("x-relay-request-id")).toBeTruthy();
  });

  it("files.create uploads through", async () => {
    const { secret } = await relay.issue();
    const f = await openai(secret).files.create({ file: await toFile(Buffer.from("hello\n"), "a.jsonl"), purpose: "batch" });
    expect(f.bytes).toBe(6);
  });

  it("files.create over the body limit: a 413 APIError", async () => {
    const { secret } = await relay.issue();
    const err = await openai(secret, { maxRetries: 2 })
      .files.create({ file: await toFile(Buffer.alloc(4 * MAX_BODY, 0x61), "big.jsonl"), purpose: "batch" })
      .catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(OpenAI.APIConnectionError);
    expect((err as APIError).status).toBe(413);
  });

  it("the SDK's timeout while the provider is slow: one call recorded, the upstream request aborted", async () => {
    const { secret, id } = await relay.issue();
    const err = await openai(secret, { timeout: 300 })
      .chat.completions.create({ model: "gpt-mock", messages }, { headers: { "x-mock-headers-delay-ms": "2000" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    await mock.waitForAbort("/chat/completions");
    await settled(id, 1);
    await sleep(100);
    expect(callsOf(id)).toHaveLength(1);
  });

  it("responses.create streaming events", async () => {
    const { secret, id } = await relay.issue();
    const stream = await openai(secret).responses.create({ model: "gpt-mock", input: "hi", stream: true });
    const types: string[] = [];
    for await (const e of stream) types.push(e.type);
    expect(types.at(-1)).toBe("response.completed");
    await settled(id, 1);
    expect(callsOf(id)[0]?.outcome).toBe(Outcome.COMPLETE);
  });

  /** A budgeted token's one Responses call, settled: its client, the answer, and the LLM tokens it was charged. */
  async function createdAndCharged() {
    const { secret, id } = await relay.issue({ limits: { budgetTokens: 100_000n } });
    const client = openai(secret);
    const created = await client.responses.create({ model: "gpt-mock", input: "hi" });
    await settled(id, 1);
    const used = async () => (await relay.tokens.getToken({ id })).token!.tokensUsed;
    const once = await used();
    expect(once).toBe(BigInt(created.usage!.total_tokens));
    return { id, client, created, used, once };
  }

  it("retrieving a stored response does not charge its usage again", async () => {
    const { id, client, created, used, once } = await createdAndCharged();
    await client.responses.retrieve(created.id);
    await client.responses.retrieve(created.id);
    await settled(id, 3);
    expect(await used()).toBe(once);
    expect(callsOf(id).map((c) => c.usage?.totalTokens)).toEqual([created.usage!.total_tokens, undefined, undefined]);
  });

  it("cancelling a response does not charge its usage again (the answer is the stored response)", async () => {
    const { id, client, created, used, once } = await createdAndCharged();
    const cancelled = await client.responses.cancel(created.id);
    expect(cancelled.usage?.total_tokens).toBe(created.usage!.total_tokens);
    await settled(id, 2);
    expect(await used()).toBe(once);
    expect(callsOf(id)[1]?.usage).toBeUndefined();
  });

  it("background: true polled to completion is charged once (the reservation of its create), not per poll", async () => {
    const { secret, id } = await relay.issue({ limits: { budgetTokens: 100_000n } });
    const usage = {
      input_tokens: 10,
      output_tokens: 1000,
      total_tokens: 1010,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens_details: { reasoning_tokens: 0 },
    };
    const base = { id: "resp_bg1", object: "response", created_at: 1, model: "gpt-mock", output: [], background: true };
    let polls = 0;
    mock.behave((r) => {
      if (r.method === "POST" && r.path.endsWith("/responses")) return { status: 200, body: { ...base, status: "queued", usage: null } };
      if (r.method === "GET" && r.path.endsWith("/responses/resp_bg1"))
        return { status: 200, body: ++polls < 3 ? { ...base, status: "in_progress", usage: null } : { ...base, status: "completed", usage } };
      return undefined;
    });
    const client = openai(secret);
    const used = async () => (await relay.tokens.getToken({ id })).token!.tokensUsed;
    const r = await client.responses.create({ model: "gpt-mock", input: "hi", background: true });
    await settled(id, 1);
    const reserved = await used();
    // No usage in the queued answer: the create is charged its maximum (its inserted output cap bounds the work).
    expect(reserved).toBeGreaterThanOrEqual(BigInt(usage.total_tokens));
    let got = await client.responses.retrieve(r.id);
    while (got.status !== "completed") got = await client.responses.retrieve(r.id);
    await client.responses.retrieve(r.id);
    await settled(id, 5);
    expect(await used()).toBe(reserved);
  });

  it("errors the SDK parses: class, status and message", async () => {
    const bad = await openai("rai_nope")
      .models.list()
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((bad as APIError).message).toMatch(/^401 /);
    const pinned = await relay.issue({ limits: { models: ["gpt-mock"] } });
    const denied = await openai(pinned.secret)
      .chat.completions.create({ model: "gpt-4o", messages })
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.PermissionDeniedError);
    const once = await relay.issue({ limits: { maxCalls: 1n } });
    await openai(once.secret).chat.completions.create({ model: "gpt-mock", messages });
    const spent = await openai(once.secret)
      .chat.completions.create({ model: "gpt-mock", messages })
      .catch((e: unknown) => e);
    expect(spent).toBeInstanceOf(OpenAI.RateLimitError);
  });

  it("a body over the limit: the SDK sees a 413 APIError, not a connection error it retries", async () => {
    const { secret, id } = await relay.issue();
    const big = "x".repeat(4 * MAX_BODY);
    const err = await openai(secret, { maxRetries: 2 })
      .chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: big }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).not.toBeInstanceOf(OpenAI.APIConnectionError);
    expect((err as APIError).status).toBe(413);
    expect(mock.requests).toHaveLength(0);
    expect(callsOf(id)).toHaveLength(0);
  });
});

/**
 * fetch as a page on another origin sees it: the request carries `Origin`, and the response
 * shows the page only the CORS-safelisted headers and those the answer exposes
 * (Access-Control-Expose-Headers), as a browser filters them (Fetch standard, "CORS-filtered
 * response"). The SDKs read `x-should-retry`, `retry-after(-ms)` and the request id from there.
 */
const SAFELISTED = new Set(["cache-control", "content-language", "content-length", "content-type", "expires", "last-modified", "pragma"]);
function pageFetch(origin: string, sent: string[]): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    // The preflight a browser sends first (every SDK request sets non-safelisted headers).
    const names: string[] = [];
    headers.forEach((_v, k) => names.push(k));
    const asked = names.filter((k) => k !== "content-type" || !/^text\/plain|^multipart\/form-data|^application\/x-www-form-urlencoded/.test(headers.get(k)!));
    const pre = await fetch(input, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": init?.method ?? "GET", "access-control-request-headers": asked.join(",") },
    });
    const allowed = new Set((pre.headers.get("access-control-allow-headers") ?? "").split(",").map((h) => h.trim().toLowerCase()));
    if (pre.headers.get("access-control-allow-origin") !== origin || asked.some((h) => !allowed.has(h))) throw new TypeError("Failed to fetch (preflight)");
    headers.set("origin", origin);
    sent.push(String(input));
    const res = await fetch(input, { ...init, headers });
    const allow = res.headers.get("access-control-allow-origin");
    if (allow !== origin && allow !== "*") throw new TypeError("Failed to fetch (CORS)");
    const exposed = new Set((res.headers.get("access-control-expose-headers") ?? "").split(",").map((h) => h.trim().toLowerCase()));
    const visible = new Headers();
    res.headers.forEach((v, k) => {
      if (SAFELISTED.has(k) || exposed.has(k) || exposed.has("*")) visible.set(k, v);
    });
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers: visible });
  };
}

describe("the SDKs in a page on another origin", () => {
  const ORIGIN = "https://app.example";

  it("openai: an exhausted token is not retried (x-should-retry readable by the page)", async () => {
    const once = await relay.issue({ limits: { maxCalls: 1n } });
    const sent: string[] = [];
    const client = openai(once.secret, { maxRetries: 2, fetch: pageFetch(ORIGIN, sent), dangerouslyAllowBrowser: true });
    await client.chat.completions.create({ model: "gpt-mock", messages });
    const spent = await client.chat.completions.create({ model: "gpt-mock", messages }).catch((e: unknown) => e);
    expect(spent).toBeInstanceOf(OpenAI.RateLimitError);
    expect(sent).toHaveLength(2);
  });

  it("anthropic: the provider's request-id reaches the SDK", async () => {
    const { secret } = await relay.issue({ provider: "anthropic" });
    mock.behave((r) =>
      r.path.endsWith("/messages")
        ? { status: 529, body: { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, headers: { "request-id": "req_ant_1" } }
        : undefined,
    );
    const err = await anthropic(secret, { fetch: pageFetch(ORIGIN, []), dangerouslyAllowBrowser: true })
      .messages.create({ model: "claude-mock", max_tokens: 5, messages })
      .catch((e: unknown) => e);
    expect((err as AnthropicAPIError).status).toBe(529);
    expect((err as AnthropicAPIError).requestID).toBe("req_ant_1");
  });
});

describe("anthropic SDK", () => {
  it("countTokens on a budgeted token: no max_tokens inserted into the body", async () => {
    const { secret } = await relay.issue({ provider: "anthropic", limits: { budgetTokens: 100_000n } });
    mock.behave((r) => (r.path.endsWith("/count_tokens") ? { status: 200, body: { input_tokens: 7 } } : undefined));
    const res = await anthropic(secret).messages.countTokens({ model: "claude-mock", messages });
    expect(res.input_tokens).toBe(7);
    const body = JSON.parse(mock.requests[0]!.body.toString()) as Record<string, unknown>;
    expect(body.max_tokens).toBeUndefined();
  });

  it("a stream aborted mid-way: TRUNCATED once, the upstream request aborted", async () => {
    const { secret, id } = await relay.issue({ provider: "anthropic" });
    const stream = anthropic(secret).messages.stream(
      { model: "claude-mock", max_tokens: 500, messages },
      { headers: { "x-mock-chunks": "100", "x-mock-delay-ms": "20" } },
    );
    let n = 0;
    stream.on("text", () => {
      if (++n === 3) stream.abort();
    });
    await stream.done().catch(() => {});
    await mock.waitForAbort("/messages");
    await settled(id, 1);
    await sleep(100);
    expect(callsOf(id).map((c) => c.outcome)).toEqual([Outcome.TRUNCATED]);
  });

  it("a provider that resets mid-stream: the SDK's stream fails, the call TRUNCATED", async () => {
    const { secret, id } = await relay.issue({ provider: "anthropic" });
    const stream = anthropic(secret).messages.stream(
      { model: "claude-mock", max_tokens: 500, messages },
      { headers: { "x-mock-chunks": "20", "x-mock-reset": "mid-stream" } },
    );
    const err = await stream.finalMessage().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    await settled(id, 1);
    expect(callsOf(id).map((c) => c.outcome)).toEqual([Outcome.TRUNCATED]);
  });

  it("models.list", async () => {
    const { secret } = await relay.issue({ provider: "anthropic" });
    mock.behave((r) =>
      r.path.endsWith("/models")
        ? {
            status: 200,
            body: {
              data: [{ type: "model", id: "claude-mock", display_name: "m", created_at: "2025-01-01T00:00:00Z" }],
              has_more: false,
              first_id: "claude-mock",
              last_id: "claude-mock",
            },
          }
        : undefined,
    );
    const page = await anthropic(secret).models.list();
    expect(page.data.map((m) => m.id)).toEqual(["claude-mock"]);
  });

  it("errors the SDK parses: class and the Anthropic error type", async () => {
    const bad = await anthropic("rai_nope")
      .messages.create({ model: "claude-mock", max_tokens: 5, messages })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((bad as { error: { error: { type: string } } }).error.error.type).toBe("authentication_error");
    const { secret } = await relay.issue({ provider: "anthropic" });
    const big = "x".repeat(4 * MAX_BODY);
    const tooBig = await anthropic(secret, { maxRetries: 2 })
      .messages.create({ model: "claude-mock", max_tokens: 5, messages: [{ role: "user", content: big }] })
      .catch((e: unknown) => e);
    expect(tooBig).not.toBeInstanceOf(Anthropic.APIConnectionError);
    expect((tooBig as AnthropicAPIError).status).toBe(413);
    expect((tooBig as { error: { error: { type: string } } }).error.error.type).toBe("request_too_large");
  });
});
