/** The built-in catalogue. Operators can override base URLs by config, not the rest. */
import type { ProviderSpec } from "../types.js";
import { anthropic } from "./anthropic.js";
import { gemini } from "./gemini.js";
import { openai } from "./openai.js";
import { openaiCompatible } from "./openai-compatible.js";

export const BUILTIN_PROVIDERS: readonly ProviderSpec[] = [
  openai,
  anthropic,
  gemini,
  openaiCompatible("mistral", "https://api.mistral.ai"),
  openaiCompatible("groq", "https://api.groq.com/openai"),
  openaiCompatible("deepseek", "https://api.deepseek.com"),
  openaiCompatible("openrouter", "https://openrouter.ai/api"),
  openaiCompatible("together", "https://api.together.xyz"),
  openaiCompatible("fireworks", "https://api.fireworks.ai/inference"),
  openaiCompatible("xai", "https://api.x.ai"),
  openaiCompatible("perplexity", "https://api.perplexity.ai"),
  openaiCompatible("moonshot", "https://api.moonshot.cn"),
  openaiCompatible("dashscope", "https://dashscope.aliyuncs.com/compatible-mode"),
  openaiCompatible("ollama", "http://127.0.0.1:11434"),
];
