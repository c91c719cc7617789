/** Fireworks AI: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const fireworks = openaiCompatible("fireworks", "https://api.fireworks.ai/inference");
