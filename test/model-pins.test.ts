/**
 * Model pins hold against the model the provider will actually run (issue 18, finding 1): each
 * built-in provider says where its model lives (path, body, or both and which wins), the pin is
 * checked there, and the usage record names that model. Table-driven over every built-in
 * provider: a pinned call goes through and is recorded under the pinned model; every way of
 * naming another model where the provider reads it is refused before a byte reaches it.
 */
import OpenAI, { AzureOpenAI } from "openai";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { BUILTIN_PROVIDERS } from "../src/providers/builtin/index.js";
import { useRelay } from "./support/use-relay.js";

const ALLOWED = "gpt-4o-mini";
const EXPENSIVE = "gpt-4-32k-expensive";
const messages = [{ role: "user", content: "hi" }];

const { relay, mock } = useRelay({ allProviders: true });

beforeEach(() => mock.reset());

interface Req {
  path: string;
  body: Record<string, unknown> | string;
}

/** Where each provider's API names its model, as a request naming `model` that way. */
function normal(id: string, model: string): Req {
  if (id === "anthropic") return { path: "/v1/messages", body: { model, max_tokens: 5, messages } };
  if (id === "gemini") return { path: `/v1beta/models/${model}:generateContent`, body: { contents: [{ parts: [{ text: "hi" }] }] } };
  if (id === "azure-openai") return { path: `/deployments/${model}/chat/completions`, body: { model, messages } };
  return { path: "/v1/chat/completions", body: { model, messages } };
}

/** Ways to run EXPENSIVE on a token pinned to ALLOWED, by provider (every provider gets the generic ones). */
const ATTACKS: Record<string, [string, Req][]> = {
  "azure-openai": [
    ["deployment in the path, pinned model in the body", { path: `/deployments/${EXPENSIVE}/chat/completions`, body: { model: ALLOWED, messages } }],
    ["deployment in the path, no model in the body", { path: `/deployments/${EXPENSIVE}/chat/completions`, body: { messages } }],
    ["deployment segment in another case", { path: `/DEPLOYMENTS/${EXPENSIVE}/chat/completions`, body: { model: ALLOWED, messages } }],
    ["an escaped deployment segment", { path: `/%64eployments/${EXPENSIVE}/chat/completions`, body: { model: ALLOWED, messages } }],
    ["embeddings on another deployment", { path: `/deployments/${EXPENSIVE}/embeddings`, body: { model: ALLOWED, input: "x" } }],
    ["pinned deployment, another model in the body", { path: `/deployments/${ALLOWED}/chat/completions`, body: { model: EXPENSIVE, messages } }],
    ["v1 API, model in the body", { path: "/v1/chat/completions", body: { model: EXPENSIVE, messages } }],
  ],
  gemini: [
    ["another model in the path, pinned model in the body", { path: `/v1beta/models/${EXPENSIVE}:generateContent`, body: { model: ALLOWED, contents: [] } }],
    ["a streamed call on another model", { path: `/v1beta/models/${EXPENSIVE}:streamGenerateContent`, body: { contents: [] } }],
    ["the models segment in another case", { path: `/v1beta/MODELS/${EXPENSIVE}:generateContent`, body: { model: ALLOWED, contents: [] } }],
    ["a tuned model named like the pin", { path: `/v1beta/tunedModels/${ALLOWED}:generateContent`, body: { model: ALLOWED, contents: [] } }],
    [
      "the pinned model in the path, another in the body",
      { path: `/v1beta/models/${ALLOWED}:generateContent`, body: { model: `models/${EXPENSIVE}`, contents: [] } },
    ],
    ["the OpenAI-compatible endpoint, another model in the body", { path: "/v1beta/openai/chat/completions", body: { model: EXPENSIVE, messages } }],
  ],
  openrouter: [
    ["fallback models after the pinned one", { path: "/v1/chat/completions", body: { model: ALLOWED, models: [EXPENSIVE], messages } }],
    ["a preset naming another model", { path: "/v1/chat/completions", body: { model: ALLOWED, preset: "expensive-preset", messages } }],
  ],
  mistral: [["an agent running another model", { path: "/v1/agents/completions", body: { model: ALLOWED, agent_id: "ag_expensive", messages } }]],
  fireworks: [
    [
      "an image workflow on another model",
      { path: `/v1/workflows/accounts/fireworks/models/${EXPENSIVE}/text_to_image`, body: { model: ALLOWED, prompt: "x" } },
    ],
  ],
};

function generic(id: string): [string, Req][] {
  const n = normal(id, EXPENSIVE);
  const list: [string, Req][] = [["another model where the provider reads it", n]];
  if (id !== "gemini") {
    // Go servers (Ollama and other compatible ones) read JSON keys case-insensitively.
    const text = JSON.stringify(normal(id, ALLOWED).body).replace(/^\{/, `{"Model":"${EXPENSIVE}",`);
    list.push(["a second model key in another case", { path: normal(id, ALLOWED).path, body: text }]);
  }
  if (id !== "anthropic" && id !== "gemini") {
    list.push(["the Responses API with another model", { path: "/v1/responses", body: { model: EXPENSIVE, input: "hi" } }]);
  }
  return list;
}

async function send(secret: string, id: string, req: Req): Promise<{ status: number; text: string }> {
  const res = await fetch(`${relay.url}/api/${id}${req.path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: typeof req.body === "string" ? req.body : JSON.stringify(req.body),
  });
  return { status: res.status, text: await res.text() };
}

const outcomes: string[] = [];
afterAll(() => console.log(`[model-pins] ${outcomes.join("; ")}`));

describe.each(BUILTIN_PROVIDERS.map((p) => p.id))("%s", (id) => {
  it("runs the pinned model and records it as the model used", async () => {
    const { secret, id: tokenId } = await relay.issue({ provider: id, limits: { models: [ALLOWED] } });
    const res = await send(secret, id, normal(id, ALLOWED));
    expect(res.status, res.text).toBe(200);
    expect(mock.requests).toHaveLength(1);
    expect(relay.calls.filter((c) => c.tokenId === tokenId).map((c) => c.model)).toEqual([ALLOWED]);
  });

  it.each([...generic(id), ...(ATTACKS[id] ?? [])])("refuses %s before it reaches the provider", async (name, req) => {
    const { secret } = await relay.issue({ provider: id, limits: { models: [ALLOWED] } });
    const res = await send(secret, id, req);
    outcomes.push(`${id} / ${name}: ${res.status}`);
    expect([400, 403], res.text).toContain(res.status);
    expect(mock.requests, `${id}: ${name} reached the provider`).toHaveLength(0);
  });
});

describe("the usage record names the model the provider ran", () => {
  it("Azure: the deployment in the path, not the body's model", async () => {
    const { secret, id } = await relay.issue({ provider: "azure-openai" });
    expect((await send(secret, "azure-openai", { path: `/deployments/${EXPENSIVE}/chat/completions`, body: { model: ALLOWED, messages } })).status).toBe(200);
    expect((await send(secret, "azure-openai", { path: "/v1/chat/completions", body: { model: ALLOWED, messages } })).status).toBe(200);
    expect(relay.calls.filter((c) => c.tokenId === id).map((c) => c.model)).toEqual([EXPENSIVE, ALLOWED]);
  });

  it("Gemini: the model in the path; the body's model on the OpenAI-compatible endpoint", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini" });
    expect((await send(secret, "gemini", { path: `/v1beta/models/${EXPENSIVE}:generateContent`, body: { contents: [] } })).status).toBe(200);
    expect((await send(secret, "gemini", { path: "/v1beta/openai/chat/completions", body: { model: ALLOWED, messages } })).status).toBe(200);
    expect(relay.calls.filter((c) => c.tokenId === id).map((c) => c.model)).toEqual([EXPENSIVE, ALLOWED]);
  });
});

describe("Azure OpenAI through the openai SDK's AzureOpenAI client", () => {
  const azure = (secret: string, deployment: string) =>
    new AzureOpenAI({ apiKey: secret, baseURL: `${relay.url}/api/azure-openai`, apiVersion: "2024-10-21", deployment, maxRetries: 0 });

  it("a token pinned to gpt-4o-mini cannot call another deployment (the finding: it got 200)", async () => {
    const { secret, id } = await relay.issue({ provider: "azure-openai", limits: { models: [ALLOWED] } });
    const err = await azure(secret, EXPENSIVE)
      .chat.completions.create({ model: ALLOWED, messages: [{ role: "user", content: "hi" }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    outcomes.push(`AzureOpenAI SDK, deployment ${EXPENSIVE}: ${err instanceof OpenAI.APIError ? err.status : 200}`);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(mock.requests).toHaveLength(0);

    const ok = await azure(secret, ALLOWED).chat.completions.create({ model: ALLOWED, messages: [{ role: "user", content: "hi" }] });
    expect(ok.choices[0]?.message.content).toBeTruthy();
    expect(mock.requests.map((r) => r.path)).toEqual([`/openai/deployments/${ALLOWED}/chat/completions`]);
    expect(relay.calls.filter((c) => c.tokenId === id).map((c) => c.model)).toEqual([ALLOWED]);
  });
});
