/**
 * Mistral AI: OpenAI-compatible, `Authorization: Bearer`. An `agent_id` (agents completions,
 * conversations) runs the agent's own model whatever `model` says, so it is refused under a pin.
 * The Conversations API (`/v1/conversations`, and appending to or restarting one) keeps its
 * output cap in `completion_args`.
 */
import type { ShapePolicy } from "../../policy/shape-policy.js";
import { OPENAI_MODELS, OPENAI_POLICY, openaiShape } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

/** https://docs.mistral.ai/api/#tag/beta.conversations */
const CONVERSATIONS: ShapePolicy = {
  endpoints: [{ path: /\/conversations(?:\/[^/]+(?:\/restart)?)?$/, capField: "max_tokens" }],
  toolFields: OPENAI_POLICY.toolFields,
  capFields: ["max_tokens"],
  choiceFields: [],
  capsIn: ["completion_args"],
  streamField: "stream",
  remoteInput: OPENAI_POLICY.remoteInput,
};

export const mistral: ProviderSpec = {
  ...openaiCompatible("mistral", "https://api.mistral.ai"),
  models: { ...OPENAI_MODELS, rerouting: ["agent_id"] },
  shape: { ...openaiShape, policy: { ...OPENAI_POLICY, compatible: [{ path: /^\/v1\/conversations(?:\/|$)/i, policy: CONVERSATIONS }] } },
};
