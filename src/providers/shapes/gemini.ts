/**
 * The Gemini generateContent shape: the model is a path segment, usage is `usageMetadata` on
 * whole answers, on each event of an alt=sse stream and on each element of the JSON array
 * streamed without it.
 */
import { RelayError } from "../../errors.js";
import type { ShapePolicy } from "../../policy/shape-policy.js";
import type { OwnedObjectRules } from "../owned-objects.js";
import type { ApiShape } from "../types.js";
import { OPENAI_COMPATIBLE_POLICY, openaiUsage } from "./openai.js";
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
 * Google's system parameters (https://cloud.google.com/apis/docs/system-parameters) in the query,
 * either spelling, that keep usageMetadata (or `usage`) from the meter or name a project for
 * billing and quota other than the key's own: on every Gemini path. `alt=media` downloads a file
 * (a batch's results, a video), which carries no usage. Their header forms are never forwarded
 * (src/relay/headers.ts).
 */
const GOOGLE_PARAMS: NonNullable<ShapePolicy["refusedParams"]> = {
  query: [
    { name: "fields" },
    { name: "$fields" },
    { name: "alt", allow: /^(?:json|sse|media)$/i },
    { name: "$alt", allow: /^(?:json|sse|media)$/i },
    { name: "userproject" },
    { name: "$userproject" },
  ],
};

/** The calls that create a batch (many requests run later, each reported later). */
const BATCH_CREATE = /:(?:batchgeneratecontent|asyncbatchembedcontent)$/i;

/**
 * Imagen's `:predict` and Veo's `:predictLongRunning` make `parameters.sampleCount` images or
 * videos (either spelling) for each of the body's `instances`: the token's `max_n` caps their
 * product and a budget reserves it. A body that names no count gets the provider's default:
 * Imagen's is 4, the most either takes, so 4 is assumed for both. The path names the model, so
 * a pin holds as for generateContent. No tools, no output cap to insert.
 */
const PREDICT: ShapePolicy = {
  endpoints: [],
  toolFields: [],
  capFields: [],
  choiceFields: ["sampleCount", "sample_count"],
  capsIn: ["parameters"],
  choicesPer: "instances",
  defaultChoices: 4,
  remoteInput: [],
  refusedParams: GOOGLE_PARAMS,
};

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
  refusedParams: GOOGLE_PARAMS,
  // Ephemeral tokens for the Live API (`/v1alpha/auth_tokens`) reach Google directly.
  refusedPaths: [/\/auth_tokens(?![\w-])/i],
  // A batch's requests are nested in the body (`batch.input_config.requests`) or an uploaded
  // file, each with its own generationConfig and tools; the async embedding batch is reported later.
  batchPaths: [BATCH_CREATE],
  // The OpenAI-compatible endpoint (https://ai.google.dev/gemini-api/docs/openai) takes OpenAI's
  // names: its caps, `n` and `stream_options` are top-level fields, not generationConfig's.
  compatible: [
    { path: /^\/v1[a-z0-9]*\/openai(?:\/|$)/i, policy: { ...OPENAI_COMPATIBLE_POLICY, refusedParams: GOOGLE_PARAMS } },
    { path: /:predict(?:longrunning)?\/*$/i, policy: PREDICT },
  ],
};

/**
 * A Files API name (`files/abc-123`), alone or as Google's URI of it
 * (`https://generativelanguage.googleapis.com/v1beta/files/abc-123`, also `/download/` and a
 * `:download` or query after it). Any other URL (`gs://`, a web page Gemini fetches) or a
 * function argument that merely ends in `/files/x` names no object of the rules.
 */
const FILE_NAME = /^(?:https:\/\/generativelanguage\.googleapis\.com\/(?:download\/)?v1\w*\/)?(files\/[a-z0-9-]+)(?:[:?#].*)?$/i;

/**
 * Objects Gemini stores for later calls (DESIGN 10b), each its creator's, by its resource name:
 * files (the resumable upload's last command answers `{"file": {"name"}}`), cached contents and
 * batches (with the file of results a finished one names). A request names a file by URI
 * (`fileData.fileUri`) or name (a batch's `input_config.file_name`), a cache by name, each at
 * any depth. The
 * OpenAI-compatible endpoint's files and batches, the File Search stores, corpora and a tuned
 * model's permissions or ownership are no rule's: refused unless allowUnknownObjects.
 */
const GEMINI_OBJECTS: OwnedObjectRules = {
  creates: [
    { path: /^\/upload\/v1\w*\/files\/*$/i, idAt: ["file", "name"] },
    { path: /\/cachedContents\/*$/i, idAt: ["name"] },
    { path: BATCH_CREATE, idAt: ["name"] },
    { method: "GET", path: /\/batches\/[^/:]+\/*$/i, idAt: ["response", "responsesFile"] },
    { method: "GET", path: /\/batches\/[^/:]+\/*$/i, idAt: ["metadata", "output", "responsesFile"] },
  ],
  uses: [{ path: /\/(files\/[^/:]+)/i }, { path: /\/(cachedContents\/[^/:]+)/i }, { path: /\/(batches\/[^/:]+)/i }],
  lists: [/\/files\/*$/i, /\/cachedContents\/*$/i, /\/batches\/*$/i],
  refs: [
    { field: "fileUri", deep: true, idIn: FILE_NAME },
    { field: "file_uri", deep: true, idIn: FILE_NAME },
    { field: "file_name", deep: true, idIn: FILE_NAME },
    { field: "fileName", deep: true, idIn: FILE_NAME },
    // At any depth: the OpenAI-compatible endpoint takes it in `extra_body.google.cached_content`.
    { field: "cachedContent", deep: true },
    { field: "cached_content", deep: true },
  ],
  tracked: [{ path: /\/(?:files|cachedContents|batches)(?![\w-])/i }],
  untracked: [
    { path: /^\/v1\w*\/openai\/(?:files|batches)(?![\w-])/i },
    { path: /\/(?:fileSearchStores|corpora|ragStores)(?![\w-])/i },
    { path: /\/tunedModels\/[^/]+\/permissions(?![\w-])/i },
    { path: /:transferOwnership$/i },
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
  objects: GEMINI_OBJECTS,
  // The Files API's resumable upload: `start` answers with the URL the bytes go to. A path with
  // a custom method (`/upload/…/models/m:generateContent`, also spelled `%3A`) runs something: its
  // body is read and checked as any request's, whatever its upload headers say.
  uploads: { rawPaths: /^\/upload\/(?!.*(?::|%3[aA]))/, urlHeaders: ["x-goog-upload-url", "x-goog-upload-control-url"] },
  meter: (contentType) => createUsageMeter(contentType, readUsage, (text) => text.includes('"usageMetadata"') || USAGE_OBJECT.test(text)),
  // A 400 INVALID_ARGUMENT whose google.rpc.ErrorInfo says `"reason": "API_KEY_INVALID"`.
  keyInvalid: (body) =>
    isObject(body) &&
    isObject(body.error) &&
    Array.isArray(body.error.details) &&
    body.error.details.some((d) => isObject(d) && d.reason === "API_KEY_INVALID"),
};
