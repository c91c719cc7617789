/** The OpenAI API shape, shared by every OpenAI-compatible provider. */
import type { RelayError } from "../../errors.js";
import type { ApiShape, Usage } from "../types.js";
import { createUsageMeter, isObject, usageOf } from "./usage-meter.js";

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

/** OpenAI sends `"usage":null` on every chunk but the last when include_usage is on. */
const NULL_USAGE = /"usage":\s*null/;

function readUsage(value: unknown, seen: Usage | undefined): Usage | undefined {
  if (!isObject(value) || !isObject(value.usage)) return seen;
  const u = value.usage;
  return usageOf(u.prompt_tokens ?? u.input_tokens, u.completion_tokens ?? u.output_tokens, u.total_tokens);
}

export const openaiShape: ApiShape = {
  name: "openai",
  errorBody(err: RelayError): string {
    return JSON.stringify({
      error: { message: err.message, type: TYPE[err.code] ?? "api_error", param: null, code: err.code },
    });
  },
  meter: (contentType) => createUsageMeter(contentType, readUsage, (line) => line.includes('"usage"') && !NULL_USAGE.test(line)),
  // `{"error":{"code":"invalid_api_key",...}}` (https://platform.openai.com/docs/guides/error-codes)
  keyInvalid: (body) => isObject(body) && isObject(body.error) && body.error.code === "invalid_api_key",
};
