/** Ollama on the relay's own machine: OpenAI-compatible under /v1; it ignores the key. */
import { openaiCompatible } from "./openai-compatible.js";

export const ollama = openaiCompatible("ollama", "http://127.0.0.1:11434");
