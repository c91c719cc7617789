/**
 * Ollama on the relay's own machine: OpenAI-compatible under /v1; it ignores the key. Its own
 * API (`/api/chat`, `/api/generate`) answers NDJSON (or one JSON object) whose final object
 * counts `prompt_eval_count` and `eval_count`; both are metered. There the output cap is
 * `options.num_predict` (-1: no limit), and model management (pull, push, create, copy, delete,
 * blobs) is no token's: it changes the models every token runs on, and fills the disk. Nor is
 * `keep_alive`: it keeps a model in the host's memory for as long as it says, or unloads one
 * under other callers.
 */
import type { ShapePolicy } from "../../policy/shape-policy.js";
import { OPENAI_POLICY, openaiShapeReading } from "../shapes/openai.js";
import { isObject, usageOf } from "../shapes/usage-meter.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

/** Ollama's own API (https://github.com/ollama/ollama/blob/main/docs/api.md): caps in `options`. */
const NATIVE_POLICY: ShapePolicy = {
  endpoints: [{ path: /\/api\/(?:chat|generate)$/, capField: "num_predict" }],
  toolFields: ["tools"],
  capFields: ["num_predict"],
  choiceFields: [],
  capsIn: ["options"],
  hostFields: ["keep_alive"],
  streamField: "stream",
  remoteInput: [],
};

const shape = openaiShapeReading(
  (value, seen) =>
    isObject(value) && (value.prompt_eval_count !== undefined || value.eval_count !== undefined)
      ? usageOf(value.prompt_eval_count, value.eval_count, undefined)
      : seen,
  (text) => text.includes('"eval_count"'),
);

export const ollama: ProviderSpec = {
  ...openaiCompatible("ollama", "http://127.0.0.1:11434"),
  shape: { ...shape, policy: { ...OPENAI_POLICY, compatible: [{ path: /^\/api\//i, policy: NATIVE_POLICY }] } },
  adminPaths: [/^\/api\/(?:pull|push|create|copy|delete|blobs)(?:\/|$)/i],
};
