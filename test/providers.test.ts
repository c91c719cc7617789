/**
 * The built-in catalogue end to end: every provider receives the upstream credential in its own
 * style (bearer, `x-api-key`, `x-goog-api-key`, `api-key`), its default headers and query, and
 * nothing of the relay token, whichever carrier the client used.
 */
import { describe, expect, it } from "vitest";
import { BUILTIN_PROVIDERS } from "../src/providers/builtin/index.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ allProviders: true });

const PATHS: Record<string, string> = {
  anthropic: "/v1/messages",
  gemini: "/v1beta/models/gemini-mock:generateContent",
  "azure-openai": "/deployments/gpt-mock/chat/completions",
};

function expectedCredential(id: string): [string, string] {
  const spec = BUILTIN_PROVIDERS.find((p) => p.id === id)!;
  if (spec.credential.kind === "bearer") return ["authorization", `Bearer ${UPSTREAM_KEY}`];
  if (spec.credential.kind === "header") return [spec.credential.name, UPSTREAM_KEY];
  throw new Error("no built-in provider takes its key in the query");
}

describe.each(BUILTIN_PROVIDERS.map((p) => p.id))("%s", (id) => {
  it("gets the upstream key in its own style and never the relay token", async () => {
    const { secret } = await relay.issue({ provider: id });
    mock.reset();
    const res = await fetch(`${relay.url}/api/${id}${PATHS[id] ?? "/v1/chat/completions"}`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-mock", max_tokens: 5, messages: [{ role: "user", content: "hi" }], contents: [] }),
    });
    expect(res.status).toBe(200);
    const seen = mock.requests[0]!;
    const [name, value] = expectedCredential(id);
    expect(seen.headers[name]).toBe(value);
    const spec = BUILTIN_PROVIDERS.find((p) => p.id === id)!;
    for (const [h, v] of Object.entries(spec.defaultHeaders)) expect(seen.headers[h]).toBe(v);
    for (const [q, v] of Object.entries(spec.defaultQuery ?? {})) expect(seen.query.get(q)).toBe(v);
    const everything = JSON.stringify(seen.headers) + seen.query.toString() + seen.body.toString();
    expect(everything).not.toContain(secret);
    if (name !== "authorization") expect(seen.headers.authorization).toBeUndefined();
  });
});
