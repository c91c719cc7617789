/** Alibaba DashScope, OpenAI-compatible mode: OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const dashscope = openaiCompatible("dashscope", "https://dashscope.aliyuncs.com/compatible-mode");
