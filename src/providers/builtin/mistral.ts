/** Mistral AI: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const mistral = openaiCompatible("mistral", "https://api.mistral.ai");
