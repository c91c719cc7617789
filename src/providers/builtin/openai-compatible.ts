/**
 * A provider that speaks the OpenAI API with a bearer key: most of the catalogue. An inserted
 * output cap goes in `max_tokens`, which every compatible server knows (several silently
 * ignore OpenAI's newer `max_completion_tokens`); OpenAI itself keeps the shape's default.
 */
import { openaiShape } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";

export function openaiCompatible(id: string, baseUrl: string, outputCapField: string | null = "max_tokens"): ProviderSpec {
  return {
    id,
    baseUrl,
    credential: { kind: "bearer" },
    defaultHeaders: {},
    shape: openaiShape,
    builtin: true,
    ...(outputCapField === null ? {} : { outputCapField }),
  };
}
