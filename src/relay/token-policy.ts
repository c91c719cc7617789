/**
 * The per-token request policy, checked before a call is counted (DESIGN 3.4): provider, path
 * prefixes, browser origin, body size, then the body rules of src/policy/request-policy.ts
 * (pinned models, output cap, `n` cap, no tools unless allowed, usage forced on for OpenAI
 * streams) on a top-level scan that forwards the original bytes or a spliced copy. Pins are
 * checked where the provider reads its model (ProviderSpec/ApiShape `models`: the path, the
 * body, or both with the path winning; issue 18, finding 1).
 * An OpenAI-compatible endpoint beside a native API (Anthropic's, Gemini's, Ollama's native API
 * beside its compatible one) is read with that API's policy (ShapePolicy.compatible). No token
 * reaches a provider's administration (ProviderSpec.adminPaths), only a token without
 * per-request rules creates a batch (ShapePolicy.batchPaths), and parameters that would hide a
 * call's usage from the meter are refused (ShapePolicy.refusedParams).
 * The body comes decoded (src/relay/request-body.ts); every body that is a JSON object is
 * scanned, whatever its content type, and one in UTF-16/32 is refused when the token has body
 * rules. Failures are 403 (413 for size, 400 for malformed JSON, 415 for JSON the scanner
 * cannot read) with fixed messages.
 *
 * Two answers are rewritten for the client (src/relay/answer-filters.ts, issue 21.8): the
 * usage-only stream chunk when the relay itself asked for it, and the model list (`GET
 * /v1/models`, identified by shape: an answer shaped `{data: [{id}]}` on a path that names no
 * model) on a pinned token, filtered to the pinned models instead of refused.
 */
import { isUtf8 } from "node:buffer";
import { RelayError } from "../errors.js";
import { JsonScanError, scanTopLevel } from "../policy/json-scan.js";
import { applyRequestPolicy, PolicyViolation, type RequestPolicy } from "../policy/request-policy.js";
import { asksForUsage, onPaths, policyAt, type ShapePolicy } from "../policy/shape-policy.js";
import { modelLocationOf, type ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { type AnswerFilter, ModelListFilter, UsageChunkFilter } from "./answer-filters.js";
import { bodyKind } from "./request-body.js";
import { DEFAULT_OUTPUT_RESERVE } from "../tokens/budget-reservations.js";

export interface PolicyInput {
  path: string;
  origin: string | undefined;
  body: Buffer;
  /** The client's query, read for parameters the shape refuses (ShapePolicy.refusedParams). */
  query?: URLSearchParams | undefined;
}

export interface Checked {
  /** The body to forward: the client's own bytes unless a cap or usage option was spliced in. */
  body: Buffer;
  /** The model the provider will run (where its ModelLocation says), when the request names one. */
  model: string | undefined;
  /** The body is JSON (anything else generates nothing the relay can bound). */
  json: boolean;
  /** For a token with a budget: the output cap in force, and the choices asked for. */
  outputCap: number | undefined;
  choices: number;
  /** A rewrite of a successful answer the relay owes the client (src/relay/answer-filters.ts). */
  answer?: AnswerFilter;
}

/** The path-less model list (`/v1/models`, `/models`): query, case and trailing slashes ignored. */
function isModelList(provider: ProviderSpec, path: string, body: Buffer): boolean {
  if (provider.shape.modelList !== true || body.length > 0) return false;
  return /^(?:\/v\d+)?\/models$/.test(
    path
      .replace(/[?#].*$/s, "")
      .toLowerCase()
      .replace(/\/+$/, ""),
  );
}

/** The rules that need no body: provider, path prefixes, browser origin (uploads too: src/relay/upload-gate.ts). */
export function checkAccess(token: TokenMeta, provider: ProviderSpec, req: Pick<PolicyInput, "path" | "origin">): void {
  checkAccessAt(token, provider, req, policyAt(provider.shape.policy, req.path));
}

/** checkAccess with the policy the path is read with (policyAt), found once per call. */
function checkAccessAt(token: TokenMeta, provider: ProviderSpec, req: Pick<PolicyInput, "path" | "origin">, shape: ShapePolicy): void {
  if (token.provider !== provider.id) throw new RelayError("permission_denied", "token not valid for this provider");
  if (token.paths.length > 0 && !token.paths.some((p) => pathAllowed(req.path, p))) {
    throw new RelayError("permission_denied", "path not allowed for this token");
  }
  // Origin pins protect browser use; a non-browser client sends no Origin and is not refused
  // for it (anyone outside a browser can claim any Origin anyway).
  if (token.origins.size > 0 && req.origin !== undefined && !token.origins.has(req.origin)) {
    throw new RelayError("permission_denied", "origin not allowed for this token");
  }
  if (onPaths(provider.adminPaths, req.path) || onPaths(shape.refusedPaths, req.path)) {
    throw new RelayError("permission_denied", "this call is not allowed through the relay");
  }
  // A batch's requests are read by nobody here and metered by nobody, and thousands of them are
  // one call: only a token without such rules may create one (ShapePolicy.batchPaths).
  if (boundsRequests(token) && onPaths(shape.batchPaths, req.path)) {
    throw new RelayError("permission_denied", "batches not allowed for this token");
  }
}

/**
 * Whether the token bounds what its calls may run: a call cap or a rate (a batch of thousands of
 * requests is one call), a pin, an output or `n` cap, no tools, a budget, or a plan (whose
 * windows may count calls, LLM tokens or dollars).
 */
function boundsRequests(token: TokenMeta): boolean {
  return (
    token.maxCalls !== null ||
    token.rpm !== null ||
    token.models.size > 0 ||
    token.maxOutputTokens !== null ||
    token.maxN !== null ||
    !token.toolsAllowed ||
    token.budgetTokens !== null ||
    token.budgetMicroUsd !== null ||
    token.plan !== undefined
  );
}

/**
 * `charged`: a budget applies to the token's calls now (TokenStore.charged: its own LLM tokens or
 * dollars, or a plan that meters either); the call's maximum is then measured and bounded.
 */
export function checkPolicy(token: TokenMeta, provider: ProviderSpec, req: PolicyInput, charged = false): Checked {
  // An OpenAI-compatible endpoint beside a native API is read by OpenAI's field names.
  const shape = policyAt(provider.shape.policy, req.path);
  checkAccessAt(token, provider, req, shape);
  if (token.maxBodyBytes !== null && req.body.length > token.maxBodyBytes) {
    throw new RelayError("payload_too_large", "request body too large for this token");
  }
  const where = modelLocationOf(provider);
  const pathModel = where.inPath?.(req.path);
  if (shape.refusedParams !== undefined) checkParams(shape.refusedParams, req);
  const kind = bodyKind(req.body);
  if (kind === "wide-json" && (charged || hasBodyRules(token, shape))) {
    throw new RelayError("unsupported_media_type", "request body: JSON must be UTF-8 (RFC 8259)");
  }
  // Invalid UTF-8 is read as U+FFFD here and may be read otherwise upstream (an overlong
  // "o" in "tools"): RFC 8259 8.1 makes it not JSON, so it is refused.
  if (kind === "json" && !isUtf8(req.body)) throw new RelayError("bad_request", "request body: JSON must be valid UTF-8");
  if (kind !== "json") {
    // No JSON body (a GET, an upload): only a model named by the path can satisfy a pin.
    if (token.models.size > 0 && pathModel === undefined && isModelList(provider, req.path, req.body)) {
      return { body: req.body, model: undefined, json: false, outputCap: undefined, choices: 1, answer: new ModelListFilter(token.models) };
    }
    if (token.models.size > 0 && (pathModel === undefined || !token.models.has(pathModel))) {
      throw new RelayError("permission_denied", "model not allowed for this token");
    }
    return { body: req.body, model: pathModel, json: false, outputCap: undefined, choices: 1 };
  }
  try {
    const checked = applyRequestPolicy(
      {
        shape,
        path: req.path,
        body: req.body,
        scan: scanTopLevel(req.body),
        ...(pathModel === undefined ? {} : { pathModel }),
        modelInBody: where.inBody,
        ...(where.rerouting === undefined ? {} : { rerouting: where.rerouting }),
        // The provider's name for the cap is its main API's; a compatible API's policy names its own.
        ...(provider.outputCapField === undefined || shape !== provider.shape.policy ? {} : { capField: provider.outputCapField }),
      },
      policyOf(token, charged),
    );
    const out: Checked = { body: checked.body, model: checked.model, json: true, outputCap: checked.outputCap, choices: checked.choices ?? 1 };
    if (checked.usageSpliced) out.answer = new UsageChunkFilter();
    return out;
  } catch (e) {
    if (e instanceof JsonScanError) throw new RelayError("bad_request", `request body: ${e.message}`);
    if (e instanceof PolicyViolation) {
      throw new RelayError(e.kind === "malformed" ? "bad_request" : "permission_denied", e.message);
    }
    throw e;
  }
}

/** Refuses a query parameter the shape does not let a client set (ShapePolicy.refusedParams). */
function checkParams(refused: NonNullable<ShapePolicy["refusedParams"]>, req: PolicyInput): void {
  if (req.query === undefined || req.query.size === 0) return;
  for (const [name, value] of req.query) {
    const lower = name.toLowerCase();
    const rule = refused.query.find((q) => q.name === lower);
    if (rule !== undefined && !(rule.allow?.test(value) ?? false)) throw new RelayError("bad_request", "a query parameter is not allowed through the relay");
  }
}

/** Built once per token metadata object (the token store caches those), not per request; two when its calls may be charged or not. */
const policies = new WeakMap<TokenMeta, RequestPolicy>();
const chargedPolicies = new WeakMap<TokenMeta, RequestPolicy>();

function policyOf(token: TokenMeta, charged: boolean): RequestPolicy {
  const kept = charged ? chargedPolicies : policies;
  let policy = kept.get(token);
  if (policy === undefined) kept.set(token, (policy = buildPolicy(token, charged)));
  return policy;
}

function buildPolicy(token: TokenMeta, charged: boolean): RequestPolicy {
  return {
    ...(token.models.size > 0 ? { models: token.models } : {}),
    ...(token.maxOutputTokens === null ? {} : { maxOutputTokens: token.maxOutputTokens }),
    ...(token.maxN === null ? {} : { maxN: token.maxN }),
    toolsAllowed: token.toolsAllowed,
    // Streams are metered from their final usage event; the request policy knows which shapes
    // send one only when asked (OpenAI's) and asks for it there.
    forceStreamUsage: true,
    // A budget (LLM tokens or dollars, the token's or its plan's) reserves each call's maximum,
    // which the output cap and `n` bound.
    measure: charged,
    // And that maximum must bound what the provider may generate: a body that names no output
    // cap gets the one its reservation assumes (else the model's own limit, 32k-128k, applies).
    ...(charged && token.maxOutputTokens === null ? { defaultOutputTokens: DEFAULT_OUTPUT_RESERVE } : {}),
  };
}

/**
 * Whether the token has a rule the body must be read for: a pin, a cap, no tools, a budget, or
 * (shapes whose streams report usage only when asked, OpenAI's) the usage option forced on.
 */
function hasBodyRules(token: TokenMeta, shape: ShapePolicy): boolean {
  return (
    token.models.size > 0 || token.maxOutputTokens !== null || token.maxN !== null || !token.toolsAllowed || token.budgetTokens !== null || asksForUsage(shape)
  );
}

/** A prefix matches whole path segments: `/v1/chat` allows `/v1/chat/completions`, not `/v1/chatx`. */
export function pathAllowed(path: string, prefix: string): boolean {
  if (path === prefix) return true;
  return path.startsWith(prefix.endsWith("/") ? prefix : prefix + "/");
}
