/** The Anthropic Messages API shape. */
import type { RelayError } from "../../errors.js";
import type { ApiShape, Usage } from "../types.js";
import { usageFlags } from "../../usage/usage-flags.js";
import { createUsageMeter, isObject, usageOf } from "./usage-meter.js";

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
  // A count carried from an earlier event was already checked; its flag is carried with it.
  const prompt = usage.input_tokens !== undefined ? usage.input_tokens : (seen?.promptTokens ?? 0);
  const completion = usage.output_tokens !== undefined ? usage.output_tokens : (seen?.completionTokens ?? 0);
  return usageOf(prompt, completion, undefined, usageFlags(seen));
}

export const anthropicShape: ApiShape = {
  name: "anthropic",
  errorBody(err: RelayError): string {
    return JSON.stringify({ type: "error", error: { type: TYPE[err.code] ?? "api_error", message: err.message } });
  },
  meter: (contentType) => createUsageMeter(contentType, readUsage, (line) => line.includes('"usage"')),
  // `{"type":"error","error":{"type":"authentication_error",...}}`
  keyInvalid: (body) => isObject(body) && body.type === "error" && isObject(body.error) && body.error.type === "authentication_error",
};
