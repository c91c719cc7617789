/** The built-in catalogue, one module per provider. Operators can override base URLs by config. */
import type { ProviderSpec } from "../types.js";
import { anthropic } from "./anthropic.js";
import { azureOpenai } from "./azure-openai.js";
import { cohere } from "./cohere.js";
import { dashscope } from "./dashscope.js";
import { deepseek } from "./deepseek.js";
import { fireworks } from "./fireworks.js";
import { gemini } from "./gemini.js";
import { groq } from "./groq.js";
import { mistral } from "./mistral.js";
import { moonshot } from "./moonshot.js";
import { ollama } from "./ollama.js";
import { openai } from "./openai.js";
import { openrouter } from "./openrouter.js";
import { perplexity } from "./perplexity.js";
import { together } from "./together.js";
import { xai } from "./xai.js";

export const BUILTIN_PROVIDERS: readonly ProviderSpec[] = [
  openai,
  anthropic,
  gemini,
  azureOpenai,
  mistral,
  groq,
  deepseek,
  openrouter,
  together,
  fireworks,
  xai,
  perplexity,
  cohere,
  dashscope,
  moonshot,
  ollama,
];
