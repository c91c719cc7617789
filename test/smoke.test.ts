import OpenAI from "openai";
import { expect, it } from "vitest";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay();

it("relays a chat completion, streaming and not", async () => {
  const { secret } = await relay.issue({ limits: { maxCalls: 5n } });
  const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
  const res = await client.chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
  expect(res.choices[0]?.message.content).toContain("tok0");
  const stream = await client.chat.completions.create({
    model: "gpt-mock",
    messages: [{ role: "user", content: "hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
  expect(text).toContain("tok4");
  expect(mock.requests[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
  expect(relay.calls.map((c) => c.usage?.totalTokens)).toEqual([15, 15]);
});
