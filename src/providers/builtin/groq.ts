/** Groq (OpenAI-compatible under /openai): OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const groq = openaiCompatible("groq", "https://api.groq.com/openai");
