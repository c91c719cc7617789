/**
 * The OpenAI API shape, shared by every OpenAI-compatible provider: chat and legacy completions
 * (SSE with a final `usage` chunk, which the request policy asks for), the Responses API (SSE
 * whose `response.completed` event carries `response.usage`), embeddings, whole JSON answers.
 */
import type { RelayError } from "../../errors.js";
import type { ApiShape, ModelLocation, Usage } from "../types.js";
import { createUsageMeter, isObject, readAll, USAGE_OBJECT, usageOf, type UsageLineFilter, type UsageReader } from "./usage-meter.js";

const TYPE: Record<string, string> = {
  bad_request: "invalid_request_error",
  unauthenticated: "invalid_request_error",
  permission_denied: "permission_error",
  not_found: "invalid_request_error",
  payload_too_large: "invalid_request_error",
  unsupported_media_type: "invalid_request_error",
  rate_limited: "rate_limit_error",
  calls_exhausted: "insufficient_quota",
  budget_exhausted: "insufficient_quota",
};

/**
 * An OpenAI usage object: chat and completions name its counts `prompt_tokens` and
 * `completion_tokens`, the Responses API `input_tokens` and `output_tokens`.
 */
export function openaiUsage(u: unknown, seen: Usage | undefined): Usage | undefined {
  if (!isObject(u)) return seen;
  return usageOf(u.prompt_tokens ?? u.input_tokens, u.completion_tokens ?? u.output_tokens, u.total_tokens);
}

/**
 * Top-level `usage` (chat, completions, embeddings, a whole Responses answer), or the
 * `response.usage` of a Responses stream's final event (`response.completed`, or
 * `response.incomplete` / `response.failed` when it stopped early).
 */
const readUsage: UsageReader = (value, seen) => {
  if (!isObject(value)) return seen;
  if (isObject(value.usage)) return openaiUsage(value.usage, seen);
  return isObject(value.response) ? openaiUsage(value.response.usage, seen) : seen;
};

/** Where an OpenAI-shaped request names its model: the body's `model`. */
export const OPENAI_MODELS: ModelLocation = { inBody: true };

/**
 * The OpenAI shape with usage read from more places, for a provider whose streams put it
 * elsewhere too (Groq's `x_groq.usage`): `read` is tried after the shape's own reader, on
 * frames that show a usage object or pass `wants`.
 */
export function openaiShapeReading(read: UsageReader, wants?: UsageLineFilter): ApiShape {
  const both = readAll(readUsage, read);
  return { ...openaiShape, meter: (contentType) => createUsageMeter(contentType, both, (text) => USAGE_OBJECT.test(text) || wants?.(text) === true) };
}

export const openaiShape: ApiShape = {
  name: "openai",
  errorBody(err: RelayError): string {
    return JSON.stringify({
      error: { message: err.message, type: TYPE[err.code] ?? "api_error", param: null, code: err.code },
    });
  },
  models: OPENAI_MODELS,
  meter: (contentType) => createUsageMeter(contentType, readUsage, (text) => USAGE_OBJECT.test(text)),
  // `{"error":{"code":"invalid_api_key",...}}` (https://platform.openai.com/docs/guides/error-codes)
  keyInvalid: (body) => isObject(body) && isObject(body.error) && body.error.code === "invalid_api_key",
};
