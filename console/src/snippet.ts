/**
 * Ready-to-paste code for a token holder: the official `openai` SDK pointed at this relay.
 * Gemini's OpenAI-compatible API lives below `/v1beta/openai`; every other provider's below `/v1`.
 */
const OPENAI_COMPAT_ROOT: Record<string, string> = { gemini: "/v1beta/openai" };

export function openaiBaseURL(provider: string): string {
  return `${location.origin}/api/${provider}${OPENAI_COMPAT_ROOT[provider] ?? "/v1"}`;
}

/** With the token's secret (right after issuing) the snippet carries it; else a placeholder to fill. */
export function openaiSnippet(provider: string, model: string, secret?: string): string {
  return [
    `import OpenAI from "openai";`,
    ``,
    ...(secret === undefined ? [`const relayToken = "PASTE_THE_RELAY_TOKEN"; // shown once, when the token was issued`, ``] : []),
    `const client = new OpenAI({`,
    `  baseURL: ${JSON.stringify(openaiBaseURL(provider))},`,
    `  apiKey: ${secret === undefined ? "relayToken" : JSON.stringify(secret)},`,
    `  dangerouslyAllowBrowser: true, // a relay token is meant for the browser`,
    `});`,
    ``,
    `const stream = await client.chat.completions.create({`,
    `  model: ${JSON.stringify(model)},`,
    `  messages: [{ role: "user", content: "Hello" }],`,
    `  stream: true,`,
    `});`,
    `for await (const chunk of stream) console.log(chunk.choices[0]?.delta.content ?? "");`,
    ``,
  ].join("\n");
}
