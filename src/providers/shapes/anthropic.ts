/** The Anthropic Messages API shape. */
import type { RelayError } from "../../errors.js";
import type { ApiShape, Usage } from "../types.js";
import { createUsageMeter, isObject, num } from "./usage-meter.js";

// https://docs.anthropic.com/en/api/errors
const TYPE: Record<string, string> = {
  bad_request: "invalid_request_error",
  unauthenticated: "authentication_error",
  permission_denied: "permission_error",
  not_found: "not_found_error",
  payload_too_large: "request_too_large",
  unsupported_media_type: "invalid_request_error",
  rate_limited: "rate_limit_error",
  calls_exhausted: "rate_limit_error",
  budget_exhausted: "rate_limit_error",
  upstream_timeout: "timeout_error",
  unavailable: "overloaded_error",
};

/** `message_start` carries input tokens; `message_delta` the running output count. */
function readUsage(value: unknown, seen: Usage | undefined): Usage | undefined {
  if (!isObject(value)) return seen;
  const usage = isObject(value.usage) ? value.usage : isObject(value.message) && isObject(value.message.usage) ? value.message.usage : undefined;
  if (!usage) return seen;
  const prompt = usage.input_tokens !== undefined ? num(usage.input_tokens) : (seen?.promptTokens ?? 0);
  const completion = usage.output_tokens !== undefined ? num(usage.output_tokens) : (seen?.completionTokens ?? 0);
  return { promptTokens: prompt, completionTokens: completion, totalTokens: prompt + completion };
}

export const anthropicShape: ApiShape = {
  name: "anthropic",
  errorBody(err: RelayError): string {
    return JSON.stringify({ type: "error", error: { type: TYPE[err.code] ?? "api_error", message: err.message } });
  },
  meter: (contentType) => createUsageMeter(contentType, readUsage, (line) => line.includes('"usage"')),
};
