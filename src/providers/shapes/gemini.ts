/**
 * The Gemini generateContent shape: the model is a path segment, usage is `usageMetadata` on
 * whole answers, on each event of an alt=sse stream and on each element of the JSON array
 * streamed without it.
 */
import { RelayError } from "../../errors.js";
import type { ShapePolicy } from "../../policy/shape-policy.js";
import type { ApiShape } from "../types.js";
import { openaiUsage } from "./openai.js";
import { createUsageMeter, isObject, readAll, USAGE_OBJECT, usageOf, type UsageReader } from "./usage-meter.js";
import { geminiCompletion, geminiParts } from "./usage-parts.js";

// Google APIs' error status names (https://cloud.google.com/apis/design/errors).
const STATUS: Record<string, string> = {
  bad_request: "INVALID_ARGUMENT",
  unauthenticated: "UNAUTHENTICATED",
  permission_denied: "PERMISSION_DENIED",
  not_found: "NOT_FOUND",
  payload_too_large: "INVALID_ARGUMENT",
  unsupported_media_type: "INVALID_ARGUMENT",
  rate_limited: "RESOURCE_EXHAUSTED",
  calls_exhausted: "RESOURCE_EXHAUSTED",
  budget_exhausted: "RESOURCE_EXHAUSTED",
  quota_exhausted: "RESOURCE_EXHAUSTED",
  upstream_timeout: "DEADLINE_EXCEEDED",
  unavailable: "UNAVAILABLE",
};

/**
 * The model a Gemini path names: `/models/<m>[:method]`, or `/tunedModels/<t>` (named
 * `tunedModels/<t>`, so a pin on a base model never allows a tuned model of the same name).
 * Case-insensitive on the collection, so `/MODELS/…` cannot slip past to the body's `model`.
 */
const MODEL_IN_PATH = /\/(models|tunedmodels)\/([^/:]+)(?=[:/]|$)/i;

function modelInPath(path: string): string | undefined {
  const m = MODEL_IN_PATH.exec(path);
  if (!m?.[2]) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(m[2]);
  } catch {
    // `%zz`, a cut UTF-8 sequence: the client's mistake, never a 500.
    throw new RelayError("bad_request", "invalid path");
  }
  return m[1]!.toLowerCase() === "models" ? name : `tunedModels/${name}`;
}

/**
 * `usageMetadata` (thinking tokens are billed as output: added to the candidates, as its total
 * does; src/providers/shapes/usage-parts.ts); OpenAI's `usage` on the OpenAI-compatible endpoint.
 */
const readUsage: UsageReader = readAll(
  (value, seen) => {
    if (!isObject(value) || !isObject(value.usageMetadata)) return seen;
    const u = value.usageMetadata;
    return usageOf(u.promptTokenCount, geminiCompletion(u), u.totalTokenCount, 0, geminiParts(u));
  },
  (value, seen) => (isObject(value) && isObject(value.usage) ? openaiUsage(value.usage, seen) : seen),
);

/**
 * Caps and `candidateCount` live in generationConfig; Google's JSON mapping accepts both the
 * lowerCamelCase and the proto field names. The path, not a body field, asks for a stream
 * (`:streamGenerateContent`), and streams always report usageMetadata.
 */
const POLICY: ShapePolicy = {
  endpoints: [{ path: /:(?:stream)?generatecontent$/, capField: "maxOutputTokens" }],
  toolFields: ["tools", "toolConfig", "tool_config"],
  capFields: ["maxOutputTokens", "max_output_tokens"],
  choiceFields: ["candidateCount", "candidate_count"],
  capsIn: ["generationConfig", "generation_config"],
  // Files by URI, cached contents, and the tools that add what they find or run to the prompt.
  remoteInput: [
    '"fileData"',
    '"file_data"',
    '"fileUri"',
    '"file_uri"',
    '"cachedContent"',
    '"cached_content"',
    '"googleSearch',
    '"google_search',
    '"urlContext"',
    '"url_context"',
    '"codeExecution"',
    '"code_execution"',
  ],
};

export const geminiShape: ApiShape = {
  name: "gemini",
  errorBody(err: RelayError): string {
    return JSON.stringify({ error: { code: err.status, message: err.message, status: STATUS[err.code] ?? "INTERNAL" } });
  },
  // The path names the model on the native API; the OpenAI-compatible endpoint
  // (`/v1beta/openai/…`) names it in the body.
  models: { inPath: modelInPath, inBody: true },
  policy: POLICY,
  // The Files API's resumable upload: `start` answers with the URL the bytes go to.
  uploads: { rawPaths: /^\/upload\//, urlHeaders: ["x-goog-upload-url", "x-goog-upload-control-url"] },
  meter: (contentType) => createUsageMeter(contentType, readUsage, (text) => text.includes('"usageMetadata"') || USAGE_OBJECT.test(text)),
  // A 400 INVALID_ARGUMENT whose google.rpc.ErrorInfo says `"reason": "API_KEY_INVALID"`.
  keyInvalid: (body) =>
    isObject(body) &&
    isObject(body.error) &&
    Array.isArray(body.error.details) &&
    body.error.details.some((d) => isObject(d) && d.reason === "API_KEY_INVALID"),
};
