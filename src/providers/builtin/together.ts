/** Together AI: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const together = openaiCompatible("together", "https://api.together.xyz");
