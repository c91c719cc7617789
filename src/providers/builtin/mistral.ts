/**
 * Mistral AI: OpenAI-compatible, `Authorization: Bearer`. An `agent_id` (agents completions)
 * runs the agent's own model whatever `model` says, so it is refused under a pin.
 */
import { OPENAI_MODELS } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const mistral: ProviderSpec = {
  ...openaiCompatible("mistral", "https://api.mistral.ai"),
  models: { ...OPENAI_MODELS, rerouting: ["agent_id"] },
};
