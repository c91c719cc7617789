/** A provider that speaks the OpenAI API with a bearer key: most of the catalogue. */
import { openaiShape } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";

export function openaiCompatible(id: string, baseUrl: string): ProviderSpec {
  return { id, baseUrl, credential: { kind: "bearer" }, defaultHeaders: {}, shape: openaiShape, builtin: true };
}
