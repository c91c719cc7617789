// Errors of the HTTP layer (DESIGN 5): status, provider-shaped JSON body, what is counted and
// refunded; and CORS (preflights answered by the relay, never counted).
import Anthropic, { APIError as AnthropicError } from "@anthropic-ai/sdk";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI, { APIError } from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { INVALID_TOKEN } from "../src/errors.js";
import { isWellFormedIssued, newIssuedSecret } from "../src/tokens/issued-token.js";
import { openaiError, sleep } from "./support/http.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay();
let broken: Server;
beforeAll(async () => {
  // An upstream that sends one SSE frame, then resets the connection.
  broken = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('data: {"choices":[{"delta":{"content":"partial"}}]}\n\n');
    setTimeout(() => res.socket?.destroy(), 50);
  });
  await new Promise<void>((r) => broken.listen(0, "127.0.0.1", r));
});
afterAll(async () => {
  broken?.close();
});
beforeEach(() => mock.reset());

const messages = [{ role: "user" as const, content: "hi" }];
const chat = JSON.stringify({ model: "gpt-mock", messages });
const openai = (secret: string, provider = "openai") => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/${provider}/v1`, maxRetries: 0 });
const post = (path: string, headers: Record<string, string> = {}, body = chat) =>
  fetch(`${relay.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
const used = async (id: string) => (await relay.tokens.getToken({ id })).token!.callsUsed;
/** The error an SDK call throws (fails the test if it does not throw). */
async function thrown(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail("expected the call to fail"),
    (e: unknown) => e,
  );
}

describe("401: bad, expired, revoked tokens", () => {
  const bad: [string, Record<string, string>][] = [
    ["unknown well-formed rai_ token", { authorization: `Bearer ${newIssuedSecret()}` }],
    ["bad checksum", { authorization: `Bearer ${newIssuedSecret().slice(0, -1)}0` }],
    ["random string", { authorization: "Bearer just-some-random-string" }],
    ["huge token", { authorization: `Bearer rai_${"A".repeat(10_000)}` }],
    ["empty bearer", { authorization: "Bearer " }],
    ["basic auth", { authorization: "Basic dXNlcjpwYXNz" }],
    ["no token at all", {}],
  ];
  it.each(bad)("%s -> 401 in the OpenAI shape", async (_name, headers) => {
    const res = await post("/api/openai/v1/chat/completions", headers);
    expect(res.status).toBe(401);
    const err = openaiError(await res.text());
    expect(err).toMatchObject({ message: INVALID_TOKEN, code: "unauthenticated" });
    expect(mock.requests).toHaveLength(0);
  });

  it("an unknown well-formed token really has a valid checksum", () => {
    expect(isWellFormedIssued(newIssuedSecret())).toBe(true);
  });

  it("openai SDK surfaces AuthenticationError 401; anthropic SDK gets its own shape", async () => {
    const e = await thrown(openai(newIssuedSecret()).chat.completions.create({ model: "m", messages }));
    expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((e as APIError).status).toBe(401);
    expect((e as APIError).code).toBe("unauthenticated");
    const anthropic = new Anthropic({ apiKey: "rai_garbage", baseURL: `${relay.url}/api/anthropic`, maxRetries: 0 });
    const a = await thrown(anthropic.messages.create({ model: "m", max_tokens: 8, messages }));
    expect(a).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((a as AnthropicError).error).toEqual({ type: "error", error: { type: "authentication_error", message: INVALID_TOKEN } });
  });

  it("expired token -> 401, even right after a cached successful use", async () => {
    const { secret } = await relay.issue({ expiresInSeconds: 1 });
    expect((await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` })).status).toBe(200);
    await sleep(1100);
    const e = await thrown(openai(secret).chat.completions.create({ model: "m", messages }));
    expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(mock.requests).toHaveLength(1);
  });

  it("revoked token -> 401 at once", async () => {
    const { secret, id } = await relay.issue();
    expect((await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` })).status).toBe(200);
    await relay.tokens.revokeToken({ id });
    const res = await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` });
    expect(res.status).toBe(401);
    expect(openaiError(await res.text()).code).toBe("unauthenticated");
    expect(await used(id)).toBe(1n);
  });
});

describe("403: pinned models, paths, origins", () => {
  it("model pin", async () => {
    const { secret, id } = await relay.issue({ limits: { models: ["gpt-allowed"] } });
    const e = await thrown(openai(secret).chat.completions.create({ model: "gpt-other", messages }));
    expect(e).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((e as APIError).code).toBe("permission_denied");
    const ok = await openai(secret).chat.completions.create({ model: "gpt-allowed", messages });
    expect(ok.model).toBe("gpt-allowed");
    // Not JSON / model not a string: 400, never 5xx.
    expect((await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` }, "{not json")).status).toBe(400);
    expect((await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` }, '{"model":7}')).status).toBe(400);
    expect(mock.requests).toHaveLength(1);
    expect(await used(id)).toBe(1n);
  });

  it("path pin", async () => {
    const { secret } = await relay.issue({ limits: { paths: ["/v1/chat"] } });
    const e = await thrown(openai(secret).models.list());
    expect(e).toBeInstanceOf(OpenAI.PermissionDeniedError);
    await openai(secret).chat.completions.create({ model: "m", messages });
    expect(mock.requests.map((r) => r.path)).toEqual(["/v1/chat/completions"]);
  });

  it("origin pin", async () => {
    const { secret } = await relay.issue({ limits: { origins: ["https://app.example"] } });
    const auth = { authorization: `Bearer ${secret}` };
    const denied = await post("/api/openai/v1/chat/completions", { ...auth, origin: "https://evil.example" });
    expect(denied.status).toBe(403);
    expect(openaiError(await denied.text()).code).toBe("permission_denied");
    const ok = await post("/api/openai/v1/chat/completions", { ...auth, origin: "https://app.example" });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(mock.requests).toHaveLength(1);
  });
});

describe("other statuses", () => {
  it("unknown provider -> 404", async () => {
    const { secret } = await relay.issue();
    const res = await post("/api/nope/v1/chat/completions", { authorization: `Bearer ${secret}` });
    expect(res.status).toBe(404);
    expect(openaiError(await res.text()).code).toBe("not_found");
  });

  it("body over the token's max_body_bytes -> 413, not counted", async () => {
    const { secret, id } = await relay.issue({ limits: { maxBodyBytes: 200n } });
    const big = JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(300) }] });
    const res = await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` }, big);
    expect(res.status).toBe(413);
    expect(openaiError(await res.text()).code).toBe("payload_too_large");
    expect(await used(id)).toBe(0n);
  });

  it("calls exhausted -> 429 calls_exhausted (OpenAI and Anthropic shapes)", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 2n } });
    await openai(secret).chat.completions.create({ model: "m", messages });
    await openai(secret).chat.completions.create({ model: "m", messages });
    const e = await thrown(openai(secret).chat.completions.create({ model: "m", messages }));
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect((e as APIError).code).toBe("calls_exhausted");
    const a = await relay.issue({ provider: "anthropic", limits: { maxCalls: 1n } });
    const body = JSON.stringify({ model: "m", max_tokens: 8, messages });
    expect((await post("/api/anthropic/v1/messages", { "x-api-key": a.secret }, body)).status).toBe(200);
    const res = await post("/api/anthropic/v1/messages", { "x-api-key": a.secret }, body);
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ type: "error", error: { type: "rate_limit_error" } });
    expect(mock.requests).toHaveLength(3);
  });

  it("upstream unreachable -> 502 and the call is refunded", async () => {
    await relay.admin.upsertProvider({ provider: { id: "dead", baseUrl: "http://127.0.0.1:1", authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } });
    const { secret, id } = await relay.issue({ provider: "dead", limits: { maxCalls: 1n } });
    for (let i = 0; i < 2; i++) {
      const res = await post("/api/dead/v1/chat/completions", { authorization: `Bearer ${secret}` });
      expect(res.status).toBe(502);
      expect(openaiError(await res.text()).code).toBe("upstream_unreachable");
    }
    expect(await used(id)).toBe(0n);
    expect(relay.calls.filter((c) => c.tokenId === id).map((c) => c.outcome)).toEqual([Outcome.REFUNDED, Outcome.REFUNDED]);
  });

  it("upstream error status passes through, counted, outcome UPSTREAM_ERROR", async () => {
    const { secret, id } = await relay.issue();
    const e = await thrown(openai(secret).chat.completions.create({ model: "m", messages }, { headers: { "x-mock-status": "500" } }));
    expect(e).toBeInstanceOf(OpenAI.InternalServerError);
    expect((e as APIError).message).toContain("mock error 500");
    expect(await used(id)).toBe(1n);
    expect(relay.calls.filter((c) => c.tokenId === id)).toMatchObject([{ status: 500, outcome: Outcome.UPSTREAM_ERROR }]);
  });

  it("upstream reset mid-stream -> explicit SSE error event, outcome TRUNCATED", async () => {
    const base = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
    await relay.admin.upsertProvider({ provider: { id: "broken", baseUrl: base, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } });
    const { secret, id } = await relay.issue({ provider: "broken" });
    const res = await post("/api/broken/v1/chat/completions", { authorization: `Bearer ${secret}` });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("partial");
    expect(text).toMatch(/event: error\ndata: \{"error":\{.*\}\}\n\n$/);
    expect(relay.calls.filter((c) => c.tokenId === id)).toMatchObject([{ outcome: Outcome.TRUNCATED }]);
  });
});

describe("CORS", () => {
  it("preflight -> 204 with access-control headers, never counted (even with ?token=)", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 1n } });
    for (const url of ["/api/openai/v1/chat/completions", `/api/openai/v1/chat/completions?token=${secret}`]) {
      const res = await fetch(relay.url + url, {
        method: "OPTIONS",
        headers: {
          origin: "https://app.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "Authorization, Content-Type, X-Stainless-OS",
        },
      });
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example");
      expect(res.headers.get("access-control-allow-methods")).toContain("POST");
      expect(res.headers.get("access-control-allow-headers")).toBe("authorization, content-type, x-stainless-os");
      expect(res.headers.get("access-control-max-age")).toBeTruthy();
    }
    expect(await used(id)).toBe(0n);
    expect(mock.requests).toHaveLength(0);
    // The one call it has is still there.
    expect((await post("/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}` })).status).toBe(200);
  });

  it("actual responses, errors included, carry access-control-allow-origin", async () => {
    const { secret } = await relay.issue();
    const origin = { origin: "https://web.example" };
    const ok = await post("/api/openai/v1/chat/completions", { ...origin, authorization: `Bearer ${secret}` });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://web.example");
    expect(ok.headers.get("access-control-expose-headers")).toContain("retry-after");
    const bad = await post("/api/openai/v1/chat/completions", { ...origin, authorization: "Bearer nope" });
    expect(bad.status).toBe(401);
    expect(bad.headers.get("access-control-allow-origin")).toBe("https://web.example");
  });
});
