/** The Anthropic Messages API shape. */
import type { RelayError } from "../../errors.js";
import type { ShapePolicy } from "../../policy/shape-policy.js";
import type { OwnedObjectRules } from "../owned-objects.js";
import type { ApiShape, Usage } from "../types.js";
import { usageFlags } from "../../usage/usage-flags.js";
import { OPENAI_COMPATIBLE_POLICY } from "./openai.js";
import { createUsageMeter, isObject, USAGE_OBJECT, usageOf } from "./usage-meter.js";
import { anthropicParts, withTier } from "./usage-parts.js";

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
  quota_exhausted: "rate_limit_error",
  upstream_timeout: "timeout_error",
  unavailable: "overloaded_error",
};

/**
 * Input tokens as billed: `input_tokens` counts only what was neither written to nor read from
 * the prompt cache, so the cache counts are added (OpenAI's and Gemini's prompt counts include
 * cached tokens too). A bad count is handed on as is, for usageOf to clamp and flag.
 */
function inputOf(u: Record<string, unknown>): unknown {
  const parts = [u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens];
  if (parts.every((p) => p === undefined || p === null)) return undefined;
  let sum = 0;
  for (const p of parts) {
    if (p === undefined || p === null) continue;
    if (typeof p !== "number" || !Number.isSafeInteger(p) || p < 0) return p;
    sum += p;
  }
  return sum;
}

/**
 * `message_start` carries input tokens (in `message.usage`), `message_delta` the running
 * output count. Anthropic's OpenAI-compatible endpoint answers with OpenAI's names.
 */
function readUsage(value: unknown, seen: Usage | undefined): Usage | undefined {
  if (!isObject(value)) return seen;
  const usage = isObject(value.usage) ? value.usage : isObject(value.message) && isObject(value.message.usage) ? value.message.usage : undefined;
  if (!usage) return seen;
  const input = inputOf(usage) ?? usage.prompt_tokens;
  const output = usage.output_tokens ?? usage.completion_tokens;
  if (input === undefined && output === undefined) return seen;
  // A count carried from an earlier event was already checked; its flag is carried with it. So is
  // the service tier (message_start's), which a message_delta does not repeat.
  const read = usageOf(input ?? seen?.promptTokens ?? 0, output ?? seen?.completionTokens ?? 0, undefined, usageFlags(seen), anthropicParts(usage, seen));
  return withTier(read, seen, usage.service_tier ?? seen?.serviceTier);
}

/** Message Batches: each request's params nested in `requests`, run and billed later. */
const BATCHES = /\/messages\/batches\/*$/i;

/** Messages requires `max_tokens` anyway; the legacy /v1/complete takes `max_tokens_to_sample`. */
const POLICY: ShapePolicy = {
  endpoints: [
    { path: /\/messages$/, capField: "max_tokens" },
    { path: /\/complete$/, capField: "max_tokens_to_sample" },
  ],
  // The OpenAI names too: Anthropic's OpenAI-compatible endpoint takes them.
  toolFields: ["tools", "functions", "function_call", "tool_choice", "web_search_options", "audio", "prediction", "mcp_servers"],
  capFields: ["max_tokens", "max_tokens_to_sample"],
  choiceFields: [],
  streamField: "stream",
  // Images and documents by URL or Files API id, and the server tools that add what they find or run.
  remoteInput: ['"url"', '"file_id"', '"web_search_', '"web_fetch_', '"code_execution_', '"mcp_servers"', '"container"'],
  batchPaths: [BATCHES],
  // The OpenAI-compatible endpoint takes OpenAI's names (`max_completion_tokens`, `n`,
  // `stream_options`; https://docs.anthropic.com/en/api/openai-sdk).
  compatible: [{ path: /^\/v1\/chat\/completions\/*$/i, policy: OPENAI_COMPATIBLE_POLICY }],
};

/**
 * Objects Anthropic stores for later calls (DESIGN 10b): files uploaded through the Files API
 * and message batches (with their results), each its creator's, as OpenAI's are
 * (src/providers/shapes/openai.ts). A message names a file at any depth (`source.file_id`,
 * `container_upload`) but in a tool call's own arguments (`input`), and a code execution
 * container by id (not tracked: refused unless allowUnknownObjects, as on OpenAI). Files that
 * code execution makes are named in the answer's content, not recorded: reading them needs
 * allowUnknownObjects. Skills are shared by every user of the key: refused.
 */
const ANTHROPIC_OBJECTS: OwnedObjectRules = {
  creates: [
    { path: /\/files\/*$/i, idAt: ["id"] },
    { path: BATCHES, idAt: ["id"] },
  ],
  uses: [{ path: /\/files\/([^/]+)/i }, { path: /\/messages\/batches\/([^/]+)/i }],
  lists: [/\/files\/*$/i, BATCHES],
  refs: [{ field: "file_id", deep: true }, { field: "container" }],
  opaque: ["input"],
  tracked: [{ path: /\/(?:files|messages\/batches)(?![\w-])/i }],
  untracked: [{ path: /\/skills(?![\w-])/i }],
};

export const anthropicShape: ApiShape = {
  name: "anthropic",
  errorBody(err: RelayError): string {
    return JSON.stringify({ type: "error", error: { type: TYPE[err.code] ?? "api_error", message: err.message } });
  },
  // The body's `model` (Messages, and the OpenAI-compatible endpoint).
  models: { inBody: true },
  policy: POLICY,
  objects: ANTHROPIC_OBJECTS,
  meter: (contentType) => createUsageMeter(contentType, readUsage, (text) => USAGE_OBJECT.test(text)),
  // `{"type":"error","error":{"type":"authentication_error",...}}`
  keyInvalid: (body) => isObject(body) && body.type === "error" && isObject(body.error) && body.error.type === "authentication_error",
};
