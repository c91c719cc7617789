/**
 * The per-token request policy (issue 9, DESIGN 3.4) through the real relay: bypass attempts are
 * refused, caps are spliced in as JSON the provider parses, tools need permission, OpenAI
 * streams are always metered, and a budget in LLM tokens stops the token once usage crosses it.
 * The same rules hold on RelayService.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { expect, it } from "vitest";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay();

async function send(secret: string, body: string, path = "/api/openai/v1/chat/completions") {
  mock.reset();
  const res = await fetch(relay.url + path, { method: "POST", headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" }, body });
  const text = await res.text();
  return { status: res.status, text, upstream: mock.requests[0] };
}

const msgs = '"messages":[{"role":"user","content":"hi"}]';

it("refuses a model outside the pin, also behind escaped or duplicate keys", async () => {
  const { secret } = await relay.issue({ limits: { models: ["gpt-mock"] } });
  expect((await send(secret, `{"model":"gpt-mock",${msgs}}`)).status).toBe(200);
  expect((await send(secret, `{"model":"gpt-4",${msgs}}`)).status).toBe(403);
  expect((await send(secret, `{"\\u006dodel":"gpt-4",${msgs}}`)).status).toBe(403);
  const dup = await send(secret, `{"model":"gpt-mock","model":"gpt-4",${msgs}}`);
  expect(dup.status).toBe(400);
  expect(dup.upstream).toBeUndefined();
  expect((await send(secret, `{"model":"gpt-mock",${msgs}`)).status).toBe(400); // truncated JSON
});

it("caps output tokens: above the cap is refused, absent gets the cap spliced in", async () => {
  const { secret } = await relay.issue({ limits: { maxOutputTokens: 100 } });
  expect((await send(secret, `{"model":"m","max_tokens":101,${msgs}}`)).status).toBe(403);
  expect((await send(secret, `{"model":"m","max_completion_tokens":5000,${msgs}}`)).status).toBe(403);
  const ok = await send(secret, `{"model":"m",${msgs}}`);
  expect(ok.status).toBe(200);
  const forwarded = JSON.parse(ok.upstream!.body.toString()) as Record<string, unknown>;
  expect(forwarded.max_completion_tokens).toBe(100);
  expect(forwarded.messages).toEqual([{ role: "user", content: "hi" }]);
  // Anthropic's field is max_tokens.
  const { secret: claude } = await relay.issue({ provider: "anthropic", limits: { maxOutputTokens: 64 } });
  const a = await send(claude, `{"model":"claude-mock",${msgs}}`, "/api/anthropic/v1/messages");
  expect(a.status).toBe(200);
  expect((JSON.parse(a.upstream!.body.toString()) as { max_tokens: number }).max_tokens).toBe(64);
});

it("caps n and refuses tools unless the token allows them", async () => {
  const { secret } = await relay.issue({ limits: { maxN: 2 } });
  expect((await send(secret, `{"model":"m","n":3,${msgs}}`)).status).toBe(403);
  expect((await send(secret, `{"model":"m","n":2,${msgs}}`)).status).toBe(200);
  const tools = `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],${msgs}}`;
  expect((await send(secret, tools)).status).toBe(403);
  const { secret: allowed } = await relay.issue({ limits: { toolsAllowed: true } });
  expect((await send(allowed, tools)).status).toBe(200);
});

it("forwards untouched bytes when nothing needs inserting", async () => {
  const { secret } = await relay.issue({ limits: { toolsAllowed: true } });
  const body = `{ "model" : "m", "stream": false, ${msgs}, "x": "\\u00e9" }`;
  const res = await send(secret, body);
  expect(res.status).toBe(200);
  expect(res.upstream!.body.toString()).toBe(body);
});

it("turns usage on for OpenAI streams so they are always metered", async () => {
  const { secret } = await relay.issue();
  const res = await send(secret, `{"model":"m","stream":true,${msgs}}`);
  expect(res.status).toBe(200);
  expect((JSON.parse(res.upstream!.body.toString()) as { stream_options: unknown }).stream_options).toEqual({ include_usage: true });
  // Metered, but the usage-only chunk the client did not ask for is not forwarded (issue 21.8b).
  expect(res.text).not.toContain('"usage":{');
  expect(res.text).toContain("data: [DONE]");
  expect(relay.calls.at(-1)!.usage?.totalTokens).toBe(15);
});

it("stops a token once its metered LLM tokens cross the budget", async () => {
  const { secret } = await relay.issue({ limits: { budgetTokens: 30n } });
  expect((await send(secret, `{"model":"m",${msgs}}`)).status).toBe(200); // 15 tokens
  expect((await send(secret, `{"model":"m",${msgs}}`)).status).toBe(200); // 30 tokens
  const over = await send(secret, `{"model":"m",${msgs}}`);
  expect(over.status).toBe(429);
  expect(over.text).toContain("budget_exhausted");
  expect(over.upstream).toBeUndefined();
});

it("holds on RelayService too", async () => {
  const { secret } = await relay.issue({ limits: { models: ["gpt-mock"], maxOutputTokens: 10 } });
  const client = createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  const run = async (body: string) => {
    const parts = [];
    for await (const m of client.relay(
      { provider: "openai", path: "/v1/chat/completions", body: new TextEncoder().encode(body) },
      { headers: { authorization: `Bearer ${secret}` } },
    ))
      parts.push(m.part.case);
    return parts;
  };
  await expect(run(`{"\\u006dodel":"gpt-4",${msgs}}`)).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.PermissionDenied);
  await expect(run(`{"model":"gpt-mock","max_tokens":11,${msgs}}`)).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.PermissionDenied);
  mock.reset();
  expect((await run(`{"model":"gpt-mock",${msgs}}`)).at(-1)).toBe("end");
  expect((JSON.parse(mock.requests[0]!.body.toString()) as { max_completion_tokens: number }).max_completion_tokens).toBe(10);
});
