/** Anthropic: `x-api-key` plus a default `anthropic-version` (the SDK sends its own). */
import { anthropicShape } from "../shapes/anthropic.js";
import type { ProviderSpec } from "../types.js";

export const anthropic: ProviderSpec = {
  id: "anthropic",
  baseUrl: "https://api.anthropic.com",
  credential: { kind: "header", name: "x-api-key" },
  defaultHeaders: { "anthropic-version": "2023-06-01" },
  shape: anthropicShape,
  builtin: true,
};
