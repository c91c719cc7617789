/**
 * The OpenAI API shape, shared by every OpenAI-compatible provider: chat and legacy completions
 * (SSE with a final `usage` chunk, which the request policy asks for), the Responses API (SSE
 * whose `response.completed` event carries `response.usage`), embeddings, whole JSON answers.
 */
import type { RelayError } from "../../errors.js";
import type { ShapePolicy } from "../../policy/shape-policy.js";
import type { OwnedObjectRules } from "../owned-objects.js";
import type { ApiShape, ModelLocation, Usage } from "../types.js";
import { createUsageMeter, isObject, readAll, USAGE_OBJECT, usageOf, type UsageLineFilter, type UsageReader } from "./usage-meter.js";
import { openaiParts, withTier } from "./usage-parts.js";

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
  quota_exhausted: "insufficient_quota",
};

/**
 * An OpenAI usage object: chat and completions name its counts `prompt_tokens` and
 * `completion_tokens`, the Responses API `input_tokens` and `output_tokens`; cached, reasoning
 * and audio parts from their `*_details` (src/providers/shapes/usage-parts.ts).
 */
export function openaiUsage(u: unknown, seen: Usage | undefined): Usage | undefined {
  if (!isObject(u)) return seen;
  return usageOf(u.prompt_tokens ?? u.input_tokens, u.completion_tokens ?? u.output_tokens, u.total_tokens, 0, openaiParts(u));
}

/**
 * Top-level `usage` (chat, completions, embeddings, a whole Responses answer), or the
 * `response.usage` of a Responses stream's final event (`response.completed`, or
 * `response.incomplete` / `response.failed` when it stopped early); beside it, the
 * `service_tier` that served the call (priced apart: src/pricing/tiers.ts).
 */
const readUsage: UsageReader = (value, seen) => {
  if (!isObject(value)) return seen;
  if (isObject(value.usage)) return withTier(openaiUsage(value.usage, seen), seen, value.service_tier);
  return isObject(value.response) ? withTier(openaiUsage(value.response.usage, seen), seen, value.response.service_tier) : seen;
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

/** Streams of chat and legacy completions report usage only under `stream_options.include_usage`. */
const STREAM_USAGE = { field: "stream_options", key: "include_usage" };

/**
 * The request policy's view of the shape. An absent cap goes in as `max_completion_tokens` on
 * chat: it is the field OpenAI documents, it bounds reasoning tokens too, and its reasoning
 * models refuse `max_tokens`. The Responses API only knows `max_output_tokens`, legacy
 * completions only `max_tokens`. OpenAI-compatible providers that know only `max_tokens` and
 * ignore unknown fields set ProviderSpec.outputCapField, or the inserted cap would be ignored.
 */
export const OPENAI_POLICY: ShapePolicy = {
  endpoints: [
    { path: /\/chat\/completions$/, capField: "max_completion_tokens", usageOption: STREAM_USAGE },
    { path: /\/completions$/, capField: "max_tokens", usageOption: STREAM_USAGE },
    { path: /\/responses$/, capField: "max_output_tokens" },
  ],
  // `function_call` is the legacy form of tool_choice; `mcp_servers` is Anthropic's MCP connector
  // (its OpenAI-compatible endpoint takes it too). Azure's On Your Data (`data_sources`, and
  // `dataSources` on the older `/extensions/` path) has the resource query a search index the body
  // names, with the resource's own managed identity if asked: a retrieval tool.
  toolFields: ["tools", "functions", "function_call", "tool_choice", "web_search_options", "audio", "prediction", "mcp_servers", "data_sources", "dataSources"],
  capFields: ["max_tokens", "max_completion_tokens", "max_output_tokens"],
  // `best_of` (legacy completions) multiplies the generated tokens like `n` does.
  choiceFields: ["n", "best_of"],
  streamField: "stream",
  // Stored responses, conversations and prompts; files and images by reference; tools that add
  // what they find or run to the prompt.
  remoteInput: [
    '"previous_response_id"',
    '"conversation"',
    '"prompt":{',
    '"prompt": {',
    '"file_id"',
    '"file_ids"',
    '"file_url"',
    '"image_url"',
    '"vector_store_ids"',
    '"web_search',
    '"file_search"',
    '"code_interpreter"',
    '"mcp"',
    '"data_sources"',
    '"dataSources"',
  ],
  // Keys for Realtime sessions reached directly (`/realtime/client_secrets`, `/realtime/sessions`,
  // `/realtime/transcription_sessions`; Azure's `/realtimeapi/sessions`), and WebRTC calls the
  // relay cannot meter: refused whatever allowUnknownObjects says (the Realtime WebSocket,
  // `/realtime` itself, is relayed).
  refusedPaths: [/\/realtime(?:api)?\/./i],
  // A batch runs the requests of an uploaded JSONL file (`input_file_id`; Mistral's batch jobs
  // take them inline too); `/file_batches` of a vector store only index files.
  batchPaths: [/\/batches\/*$/i, /\/batch\/jobs\/*$/i],
};

/**
 * The OpenAI shape with a provider's own fields that search or fetch for the model (OpenRouter's
 * `plugins`, xAI's `search_parameters`): refused unless the token allows tools, and a budgeted
 * call that names one reserves a whole context, as for OpenAI's own search tools.
 */
export function openaiShapeWithTools(fields: readonly string[]): ApiShape {
  return {
    ...openaiShape,
    policy: {
      ...OPENAI_POLICY,
      toolFields: [...OPENAI_POLICY.toolFields, ...fields],
      remoteInput: [...OPENAI_POLICY.remoteInput, ...fields.map((f) => `"${f}"`)],
    },
  };
}

/**
 * The OpenAI API as other providers serve it beside their own (Anthropic's `/v1/chat/completions`,
 * Gemini's `/v1beta/openai/…`): an absent cap goes in as `max_tokens`, the name both document.
 */
export const OPENAI_COMPATIBLE_POLICY: ShapePolicy = {
  ...OPENAI_POLICY,
  endpoints: OPENAI_POLICY.endpoints.map((e) => (e.capField === "max_completion_tokens" ? { ...e, capField: "max_tokens" } : e)),
};

/**
 * Objects OpenAI stores for later calls (issue 25): stored responses (`store` defaults to true;
 * a stream names the id in `response.created`), files, uploads (and the file their completion
 * makes), conversations, chat completions sent with `store: true`, vector stores and batches
 * (and the output and error files a finished batch names). Every path below one
 * (`/responses/{id}`, `/cancel`, `/input_items`, `/files/{id}/content`, `/uploads/{id}/parts`,
 * `/vector_stores/{id}/search`, its `/files` and `/file_batches`) reaches the object;
 * `/responses/compact` and `/responses/input_tokens` act on the collection. The lists of files,
 * stored chat completions, vector stores and batches show every user's.
 *
 * Deny by default: the rest of OpenAI's state is refused, as no rule tracks whose it is:
 * assistants, threads (and their runs), containers, fine-tuning jobs (legacy `fine-tunes`
 * too), evals, videos, ChatKit, the organization API and deleting a (fine-tuned) model. So is
 * the rest of each tracked family that no rule names (`GET /v1/responses`). Realtime's HTTP
 * calls are refused whatever the options say (OPENAI_POLICY.refusedPaths).
 *
 * An input item named by id alone (`{"type":"item_reference","id":"msg_…"}`, or `{"id":…}`) on
 * the calls that take items (Responses, its compact and input_tokens, a conversation and its
 * items) has the provider add a stored item, whoever stored it: refused, as no rule records item
 * ids. Items passed back with their own content (output items, with ids) are not references.
 */
/** A vector store's `/files` are its own, not the file collection. */
const FILES = /(?<!\/vector_stores\/.*)\/files\/*$/i;
export const OPENAI_OBJECTS: OwnedObjectRules = {
  creates: [
    { path: /\/responses\/*$/i, idAt: ["id"], eventIdAt: ["response", "id"] },
    { path: FILES, idAt: ["id"] },
    { path: /\/uploads\/*$/i, idAt: ["id"] },
    { path: /\/uploads\/[^/]+\/complete\/*$/i, idAt: ["file", "id"] },
    { path: /\/conversations\/*$/i, idAt: ["id"] },
    // Mistral's Conversations API names a new conversation `conversation_id`.
    { path: /\/conversations\/*$/i, idAt: ["conversation_id"] },
    { path: /\/chat\/completions\/*$/i, idAt: ["id"], eventIdAt: ["id"], onlyIf: "store" },
    { path: /\/vector_stores\/*$/i, idAt: ["id"] },
    { path: /\/batches\/*$/i, idAt: ["id"] },
    { method: "GET", path: /\/batches\/[^/]+\/*$/i, idAt: ["output_file_id"] },
    { method: "GET", path: /\/batches\/[^/]+\/*$/i, idAt: ["error_file_id"] },
  ],
  uses: [
    { path: /\/responses\/([^/]+)/i, notIds: ["compact", "input_tokens"] },
    { path: /\/files\/([^/]+)/i },
    { path: /\/uploads\/([^/]+)/i },
    { path: /\/conversations\/([^/]+)/i },
    { path: /\/chat\/completions\/([^/]+)/i },
    { path: /\/vector_stores\/([^/]+)/i },
    { path: /\/batches\/([^/]+)/i },
  ],
  lists: [FILES, /\/chat\/completions\/*$/i, /\/vector_stores\/*$/i, /\/batches\/*$/i],
  refs: [
    { field: "previous_response_id" },
    { field: "conversation" },
    // Input files, files of a vector store or a code interpreter's container, at any depth.
    { field: "file_id", deep: true },
    { field: "file_ids", deep: true },
    // A file_search tool's stores.
    { field: "vector_store_ids", deep: true },
    // A code interpreter's named container (containers are not tracked: refused unless allowUnknownObjects).
    { field: "container", deep: true },
    { field: "container_id", deep: true },
    { field: "input_file_id" },
    { field: "training_file" },
    { field: "validation_file" },
  ],
  tracked: [{ path: /\/(?:responses|files|uploads|conversations|vector_stores|batches)(?![\w-])/i }],
  untracked: [
    { path: /\/(?:assistants|threads|containers|fine_tuning|fine-tunes|evals|videos|chatkit|organization)(?![\w-])/i },
    { path: /\/models\/./i, methods: ["DELETE"] },
  ],
  itemRefs: {
    path: /\/(?:responses(?:\/(?:compact|input_tokens))?|conversations(?:\/[^/]+\/items)?)\/*$/i,
    fields: ["input", "items"],
    type: "item_reference",
  },
};

export const openaiShape: ApiShape = {
  name: "openai",
  errorBody(err: RelayError): string {
    return JSON.stringify({
      error: { message: err.message, type: TYPE[err.code] ?? "api_error", param: null, code: err.code },
    });
  },
  models: OPENAI_MODELS,
  policy: OPENAI_POLICY,
  modelList: true,
  objects: OPENAI_OBJECTS,
  meter: (contentType) => createUsageMeter(contentType, readUsage, (text) => USAGE_OBJECT.test(text)),
  // Cancelling a (background) response answers the stored response, usage and all.
  storedReads: [/\/responses\/[^/]+\/cancel\/*$/i],
  // `{"error":{"code":"invalid_api_key",...}}` (https://platform.openai.com/docs/guides/error-codes)
  keyInvalid: (body) => isObject(body) && isObject(body.error) && body.error.code === "invalid_api_key",
};
