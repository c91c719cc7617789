/** xAI (Grok): OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const xai = openaiCompatible("xai", "https://api.x.ai");
