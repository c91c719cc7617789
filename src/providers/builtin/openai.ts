/** OpenAI: https://api.openai.com, `Authorization: Bearer`. Clients use `/api/openai/v1/...`. */
import { openaiCompatible } from "./openai-compatible.js";

export const openai = openaiCompatible("openai", "https://api.openai.com", null);
