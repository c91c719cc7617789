/**
 * The per-token request policy, checked before a call is counted (DESIGN 3.4): provider, path
 * prefixes, browser origin, body size, then the body rules of src/policy/request-policy.ts
 * (pinned models, output cap, `n` cap, no tools unless allowed, usage forced on for OpenAI
 * streams) on a top-level scan that forwards the original bytes or a spliced copy. Pins are
 * checked where the provider reads its model (ProviderSpec/ApiShape `models`: the path, the
 * body, or both with the path winning; issue 18, finding 1).
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
import { asksForUsage } from "../policy/shape-policy.js";
import { modelLocationOf, type ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { type AnswerFilter, ModelListFilter, UsageChunkFilter } from "./answer-filters.js";
import { bodyKind } from "./request-body.js";

export interface PolicyInput {
  path: string;
  origin: string | undefined;
  body: Buffer;
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
  if (token.provider !== provider.id) throw new RelayError("permission_denied", "token not valid for this provider");
  if (token.paths.length > 0 && !token.paths.some((p) => pathAllowed(req.path, p))) {
    throw new RelayError("permission_denied", "path not allowed for this token");
  }
  // Origin pins protect browser use; a non-browser client sends no Origin and is not refused
  // for it (anyone outside a browser can claim any Origin anyway).
  if (token.origins.size > 0 && req.origin !== undefined && !token.origins.has(req.origin)) {
    throw new RelayError("permission_denied", "origin not allowed for this token");
  }
}

export function checkPolicy(token: TokenMeta, provider: ProviderSpec, req: PolicyInput): Checked {
  checkAccess(token, provider, req);
  if (token.maxBodyBytes !== null && req.body.length > token.maxBodyBytes) {
    throw new RelayError("payload_too_large", "request body too large for this token");
  }
  const where = modelLocationOf(provider);
  const pathModel = where.inPath?.(req.path);
  const kind = bodyKind(req.body);
  if (kind === "wide-json" && hasBodyRules(token, provider)) {
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
        shape: provider.shape.policy,
        path: req.path,
        body: req.body,
        scan: scanTopLevel(req.body),
        ...(pathModel === undefined ? {} : { pathModel }),
        modelInBody: where.inBody,
        ...(where.rerouting === undefined ? {} : { rerouting: where.rerouting }),
        ...(provider.outputCapField === undefined ? {} : { capField: provider.outputCapField }),
      },
      policyOf(token),
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

/** Built once per token metadata object (the token store caches those), not per request. */
const policies = new WeakMap<TokenMeta, RequestPolicy>();

function policyOf(token: TokenMeta): RequestPolicy {
  let policy = policies.get(token);
  if (policy === undefined) policies.set(token, (policy = buildPolicy(token)));
  return policy;
}

function buildPolicy(token: TokenMeta): RequestPolicy {
  return {
    ...(token.models.size > 0 ? { models: token.models } : {}),
    ...(token.maxOutputTokens === null ? {} : { maxOutputTokens: token.maxOutputTokens }),
    ...(token.maxN === null ? {} : { maxN: token.maxN }),
    toolsAllowed: token.toolsAllowed,
    // Streams are metered from their final usage event; the request policy knows which shapes
    // send one only when asked (OpenAI's) and asks for it there.
    forceStreamUsage: true,
    // A budget reserves each call's maximum, which the output cap and `n` bound.
    measure: token.budgetTokens !== null,
  };
}

/**
 * Whether the token has a rule the body must be read for: a pin, a cap, no tools, a budget, or
 * (shapes whose streams report usage only when asked, OpenAI's) the usage option forced on.
 */
function hasBodyRules(token: TokenMeta, provider: ProviderSpec): boolean {
  return (
    token.models.size > 0 ||
    token.maxOutputTokens !== null ||
    token.maxN !== null ||
    !token.toolsAllowed ||
    token.budgetTokens !== null ||
    asksForUsage(provider.shape.policy)
  );
}

/** A prefix matches whole path segments: `/v1/chat` allows `/v1/chat/completions`, not `/v1/chatx`. */
export function pathAllowed(path: string, prefix: string): boolean {
  if (path === prefix) return true;
  return path.startsWith(prefix.endsWith("/") ? prefix : prefix + "/");
}
