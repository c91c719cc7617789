/** OpenRouter: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const openrouter = openaiCompatible("openrouter", "https://openrouter.ai/api");
