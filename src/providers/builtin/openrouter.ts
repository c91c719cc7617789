/**
 * OpenRouter: OpenAI-compatible, `Authorization: Bearer`. Besides `model`, a request may name
 * fallback `models` (tried when the first fails) or a `preset` that sets the model: under a pin
 * both are refused, or the pin would hold only until the pinned model errs (issue 18, finding 1).
 * Its `plugins` (web search, PDF parsing) fetch for the model and bill per result: a tool.
 */
import { OPENAI_MODELS, openaiShapeWithTools } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const openrouter: ProviderSpec = {
  ...openaiCompatible("openrouter", "https://openrouter.ai/api"),
  models: { ...OPENAI_MODELS, rerouting: ["models", "preset"] },
  shape: openaiShapeWithTools(["plugins"]),
};
