/**
 * The base URL to give a provider's official SDK so it calls the relay instead of the provider
 * (DESIGN 1): `/api/<provider>` stands for the provider's root, plus the version segment the
 * OpenAI SDK expects (`/v1`) for the built-in OpenAI-compatible providers.
 */

/** Built-in providers whose OpenAI-SDK base URL ends in `/v1` below their root. */
const V1_PROVIDERS = new Set(["openai", "mistral", "groq", "deepseek", "openrouter", "together", "fireworks", "xai", "moonshot", "dashscope", "ollama"]);
const PROVIDER = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * `relayBaseURL("https://relay.example.com", "openai")` is `https://relay.example.com/api/openai/v1`
 * (OpenAI SDK); `anthropic` gives `.../api/anthropic` (Anthropic SDK), `gemini` `.../api/gemini`;
 * a custom provider `.../api/<id>`, standing for its base URL.
 */
export function relayBaseURL(server: string, provider: string): string {
  if (!/^https?:\/\//.test(server)) throw new TypeError("server must be an http(s) URL");
  if (!PROVIDER.test(provider)) throw new TypeError("provider must be a provider id");
  return `${server.replace(/\/+$/, "")}/api/${provider}${V1_PROVIDERS.has(provider) ? "/v1" : ""}`;
}
