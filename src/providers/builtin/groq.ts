/**
 * Groq (OpenAI-compatible under /openai): OpenAI-compatible, `Authorization: Bearer`. Its
 * streams report usage in the last chunk's `x_groq.usage` (and in `usage` when asked).
 */
import { openaiShapeReading, openaiUsage } from "../shapes/openai.js";
import { isObject } from "../shapes/usage-meter.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const groq: ProviderSpec = {
  ...openaiCompatible("groq", "https://api.groq.com/openai"),
  shape: openaiShapeReading((value, seen) => (isObject(value) && isObject(value.x_groq) ? openaiUsage(value.x_groq.usage, seen) : seen)),
};
