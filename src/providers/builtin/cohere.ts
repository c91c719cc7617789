/** Cohere, OpenAI-compatible API: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const cohere = openaiCompatible("cohere", "https://api.cohere.ai/compatibility");
