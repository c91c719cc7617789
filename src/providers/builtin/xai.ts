/**
 * xAI (Grok): OpenAI-compatible, `Authorization: Bearer`. Live Search (`search_parameters`)
 * searches the web and X for the model, billed per source: a tool.
 */
import { openaiShapeWithTools } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const xai: ProviderSpec = { ...openaiCompatible("xai", "https://api.x.ai"), shape: openaiShapeWithTools(["search_parameters"]) };
