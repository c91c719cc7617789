/**
 * Ollama on the relay's own machine: OpenAI-compatible under /v1; it ignores the key. Its own
 * API (`/api/chat`, `/api/generate`) answers NDJSON (or one JSON object) whose final object
 * counts `prompt_eval_count` and `eval_count`; both are metered.
 */
import { openaiShapeReading } from "../shapes/openai.js";
import { isObject, usageOf } from "../shapes/usage-meter.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const ollama: ProviderSpec = {
  ...openaiCompatible("ollama", "http://127.0.0.1:11434"),
  shape: openaiShapeReading(
    (value, seen) =>
      isObject(value) && (value.prompt_eval_count !== undefined || value.eval_count !== undefined)
        ? usageOf(value.prompt_eval_count, value.eval_count, undefined)
        : seen,
    (text) => text.includes('"eval_count"'),
  ),
};
