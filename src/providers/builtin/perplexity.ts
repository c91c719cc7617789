/** Perplexity: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const perplexity = openaiCompatible("perplexity", "https://api.perplexity.ai");
