/**
 * Moonshot AI (Kimi): OpenAI-compatible, `Authorization: Bearer`. Its streams may report usage
 * inside the final choice (`choices[0].usage`) rather than at the top level.
 */
import { openaiShapeReading, openaiUsage } from "../shapes/openai.js";
import { isObject } from "../shapes/usage-meter.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const moonshot: ProviderSpec = {
  ...openaiCompatible("moonshot", "https://api.moonshot.cn"),
  shape: openaiShapeReading((value, seen) => {
    const choice = isObject(value) && Array.isArray(value.choices) ? (value.choices as unknown[])[0] : undefined;
    return isObject(choice) ? openaiUsage(choice.usage, seen) : seen;
  }),
};
