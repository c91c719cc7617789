/**
 * Alibaba DashScope, OpenAI-compatible mode: OpenAI-compatible, `Authorization: Bearer`. Qwen's
 * `enable_search` (and its `search_options`) has the model search the web first: a tool.
 */
import { openaiShapeWithTools } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const dashscope: ProviderSpec = {
  ...openaiCompatible("dashscope", "https://dashscope.aliyuncs.com/compatible-mode"),
  shape: openaiShapeWithTools(["enable_search", "search_options"]),
};
