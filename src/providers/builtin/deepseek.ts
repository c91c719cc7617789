/** DeepSeek: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const deepseek = openaiCompatible("deepseek", "https://api.deepseek.com");
