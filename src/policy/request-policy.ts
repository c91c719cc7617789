/**
 * The body half of a token's request policy (DESIGN 3.4, issue 9): pinned models (checked
 * where the provider reads its model: the path, the body, fields that reroute; issue 18), an
 * output cap, a cap on `n`, no tools unless allowed, and usage forced on for OpenAI-shaped
 * streams; with `measure`, what the request lets the model generate (for budget reservations).
 * Works on a scanTopLevel result (duplicate and escaped top-level keys are already handled
 * there) and returns the original bytes or a spliced copy; nothing is re-serialised. Pure.
 *
 * Caps are inserted only on the generation endpoints named below, since other endpoints
 * (embeddings, images, count_tokens, batches) refuse unknown fields; on those, fields that are
 * present are still checked, and the endpoint allowlist is what keeps a token off them.
 */
import {
  JsonScanError, applySplices, insertionSplice, isNull, readBoolean, readNumber, readString,
  replacementSplice, scanObjectValue, type ScanResult, type Splice, type TopLevelField,
} from "./json-scan.js";
import { endpointOf, type Endpoint } from "./endpoints.js";
import { outputBound } from "./output-bound.js";

export type PolicyShape = "openai" | "anthropic" | "gemini";

export interface RequestPolicy {
  models?: ReadonlySet<string>;
  maxOutputTokens?: number;
  maxN?: number;
  toolsAllowed: boolean;
  forceStreamUsage: boolean;
  /** Report the request's output cap and choices (PolicyResult), for budget reservations. */
  measure?: boolean;
}

export interface PolicyRequest {
  shape: PolicyShape;
  /** Path below the provider root (e.g. `/v1/chat/completions`); picks where a cap goes. */
  path: string;
  body: Buffer;
  scan: ScanResult;
  /**
   * The model named by the path (Gemini, Azure deployments), read by the provider's
   * ModelLocation. Where it is set the path wins: the provider runs it, whatever the body says.
   */
  pathModel?: string;
  /** Whether the body's `model` names the model where the path names none (default true). */
  modelInBody?: boolean;
  /** Body fields that let the provider run another model (OpenRouter's `models`): refused under a pin. */
  rerouting?: readonly string[];
  /** The provider's own field for an inserted output cap, when not the shape's default. */
  capField?: string;
}

export interface PolicyResult {
  /** The request body: the same Buffer when nothing was inserted. */
  body: Buffer;
  /** The model the provider will run, as far as the request says. */
  model: string | undefined;
  /** With `measure`: the output cap in force after the policy (the body's, or the inserted one). */
  outputCap?: number;
  /** With `measure`: the choices asked for (`n`, `best_of`, `candidateCount`), at least 1. */
  choices?: number;
  /** The relay turned `stream_options.include_usage` on itself: the usage-only chunk is its own. */
  usageSpliced?: true;
}

export type PolicyViolationKind = "model" | "max_tokens" | "n" | "tools" | "malformed";

export type PolicyMessage =
  | "model not allowed for this token"
  | "output token limit above this token's cap"
  | "output token limit must be a number"
  | "n above this token's cap"
  | "n must be a number"
  | "tools not allowed for this token"
  | "model must be a string"
  | "stream_options must be an object"
  | "generationConfig must be an object"
  | "a field is given under two names"
  | "a field name differs from a checked one only in case"
  | "duplicate key in a checked object";

export class PolicyViolation extends Error {
  override readonly name = "PolicyViolation";
  readonly kind: PolicyViolationKind;
  constructor(kind: PolicyViolationKind, message: PolicyMessage) {
    super(message);
    this.kind = kind;
  }
}

/** Fields that give a model tools, functions or extra capabilities, by shape. */
const TOOL_FIELDS: Record<PolicyShape, readonly string[]> = {
  // `function_call` is the legacy form of tool_choice; `mcp_servers` is Anthropic's MCP connector.
  openai: ["tools", "functions", "function_call", "tool_choice", "web_search_options", "audio", "prediction", "mcp_servers"],
  anthropic: ["tools", "functions", "function_call", "tool_choice", "web_search_options", "audio", "prediction", "mcp_servers"],
  // Google's JSON mapping accepts both the lowerCamelCase and the proto field name.
  gemini: ["tools", "toolConfig", "tool_config"],
};

/** Output caps, by shape; each present one must be a number at or below the cap. */
const CAP_FIELDS: Record<PolicyShape, readonly string[]> = {
  openai: ["max_tokens", "max_completion_tokens", "max_output_tokens"],
  anthropic: ["max_tokens", "max_tokens_to_sample"],
  gemini: ["maxOutputTokens", "max_output_tokens"], // inside generationConfig
};

/** `best_of` (legacy completions) multiplies the generated tokens like `n` does. */
const N_FIELDS: Record<PolicyShape, readonly string[]> = {
  openai: ["n", "best_of"],
  anthropic: [],
  gemini: ["candidateCount", "candidate_count"], // inside generationConfig
};

/**
 * Checked top-level names by their case fold, per shape. Go's encoding/json (Ollama and other
 * OpenAI-compatible servers) matches keys case-insensitively, Unicode folds included ("MODEL",
 * "ſtream" with a long s): a key that folds onto a checked name must be that name exactly.
 */
const fold = (key: string): string => key.toUpperCase().toLowerCase();
const CHECKED: Record<PolicyShape, Map<string, string>> = {
  openai: foldMap(["model", "stream", "stream_options", ...TOOL_FIELDS.openai, ...CAP_FIELDS.openai, ...N_FIELDS.openai]),
  anthropic: foldMap(["model", "stream", ...TOOL_FIELDS.anthropic, ...CAP_FIELDS.anthropic]),
  gemini: foldMap(["model", "generationConfig", "generation_config", ...TOOL_FIELDS.gemini]),
};

function foldMap(names: string[]): Map<string, string> {
  return new Map(names.map((name) => [fold(name), name]));
}

/**
 * Where an absent cap is inserted. OpenAI chat gets `max_completion_tokens`: it is the field
 * OpenAI documents, it bounds reasoning tokens too, and its reasoning models refuse
 * `max_tokens`. The Responses API only knows `max_output_tokens`, legacy completions only
 * `max_tokens`. Anthropic requires `max_tokens` anyway (its legacy /v1/complete:
 * `max_tokens_to_sample`). OpenAI-compatible providers that know only `max_tokens` and ignore
 * unknown fields must set PolicyRequest.capField, or the inserted cap would be ignored.
 */
const INSERT_CAP_AS: Partial<Record<Endpoint, string>> = {
  chat: "max_completion_tokens",
  responses: "max_output_tokens",
  completions: "max_tokens",
  messages: "max_tokens",
  complete: "max_tokens_to_sample",
  generate: "maxOutputTokens",
};


/** Scans an object-valued field, turning nested duplicates into a violation. */
function scanNested(body: Buffer, f: TopLevelField): ScanResult | undefined {
  try {
    return scanObjectValue(body, f);
  } catch (err) {
    if (err instanceof JsonScanError) throw new PolicyViolation("malformed", "duplicate key in a checked object");
    throw err;
  }
}

/** The one present field among aliases (`generationConfig` / `generation_config`). */
function oneOf(scan: ScanResult, names: readonly string[]): TopLevelField | undefined {
  let found: TopLevelField | undefined;
  for (const name of names) {
    const f = scan.fields.get(name);
    if (f && found) throw new PolicyViolation("malformed", "a field is given under two names");
    found ??= f;
  }
  return found;
}

/**
 * The model the provider will run: the path's when it names one (then a body `model` under a
 * pin may only repeat it: the provider ignores it, another server might not), else the body's
 * when the provider reads it there. Under a pin it must be pinned, and fields that could make
 * the provider run another model must be absent.
 */
function checkModel(req: PolicyRequest, policy: RequestPolicy): string | undefined {
  const f = req.scan.fields.get("model");
  let model: string | undefined;
  if (req.pathModel !== undefined) {
    model = req.pathModel;
    if (f && policy.models && (isNull(req.body, f) || readString(req.body, f) !== model)) throw new PolicyViolation("model", "model not allowed for this token");
  } else if (f && req.modelInBody !== false) {
    model = readString(req.body, f);
    if (model === undefined) throw new PolicyViolation("malformed", "model must be a string");
  }
  for (const name of req.rerouting ?? []) {
    for (const [key, field] of req.scan.fields) {
      if (fold(key) !== fold(name)) continue;
      if (key !== name) throw new PolicyViolation("malformed", "a field name differs from a checked one only in case");
      if (policy.models && !isNull(req.body, field)) throw new PolicyViolation("model", "model not allowed for this token");
    }
  }
  if (policy.models && (model === undefined || !policy.models.has(model))) {
    throw new PolicyViolation("model", "model not allowed for this token");
  }
  return model;
}

/**
 * Checks the caps among `fields` of one object. Returns the splices that put the cap in place:
 * a null cap field gets the cap, and with no cap field `insertAs` (when given) is inserted.
 */
function checkCaps(body: Buffer, scan: ScanResult, capFields: readonly string[], nFields: readonly string[], policy: RequestPolicy, insertAs: string | undefined, inserts: [string, string][]): Splice[] {
  const splices: Splice[] = [];
  const cap = policy.maxOutputTokens;
  if (cap !== undefined) {
    let present = false;
    for (const name of capFields) {
      const f = scan.fields.get(name);
      if (!f) continue;
      present = true;
      if (isNull(body, f)) splices.push(replacementSplice(f, String(cap)));
      else if (!withinCap(body, f, cap, "max_tokens")) throw new PolicyViolation("max_tokens", "output token limit above this token's cap");
    }
    if (!present && insertAs !== undefined) inserts.push([insertAs, String(cap)]);
  }
  if (policy.maxN !== undefined) {
    for (const name of nFields) {
      const f = scan.fields.get(name);
      if (f && !isNull(body, f) && !withinCap(body, f, policy.maxN, "n")) throw new PolicyViolation("n", "n above this token's cap");
    }
  }
  return splices;
}

/** A number at or below the cap (Infinity from 1e999 is above); anything not a number is refused. */
function withinCap(body: Buffer, f: TopLevelField, cap: number, kind: "max_tokens" | "n"): boolean {
  const v = readNumber(body, f);
  if (v === undefined) throw new PolicyViolation(kind, kind === "n" ? "n must be a number" : "output token limit must be a number");
  return v <= cap;
}

/** Gemini keeps its caps in generationConfig (or generation_config). */
function checkGeminiCaps(req: PolicyRequest, policy: RequestPolicy, insert: boolean, inserts: [string, string][]): Splice[] {
  const gc = oneOf(req.scan, ["generationConfig", "generation_config"]);
  const insertAs = insert ? (req.capField ?? INSERT_CAP_AS.generate) : undefined;
  if (!gc || isNull(req.body, gc)) {
    if (insertAs === undefined || policy.maxOutputTokens === undefined) return [];
    const value = JSON.stringify({ [insertAs]: policy.maxOutputTokens });
    if (!gc) {
      inserts.push(["generationConfig", value]);
      return [];
    }
    return [replacementSplice(gc, value)];
  }
  const inner = scanNested(req.body, gc);
  if (!inner) throw new PolicyViolation("malformed", "generationConfig must be an object");
  oneOf(inner, CAP_FIELDS.gemini);
  oneOf(inner, N_FIELDS.gemini);
  const innerInserts: [string, string][] = [];
  const splices = checkCaps(req.body, inner, CAP_FIELDS.gemini, N_FIELDS.gemini, policy, insertAs, innerInserts);
  if (innerInserts.length > 0) splices.push(insertionSplice(inner, innerInserts));
  return splices;
}

/** `stream_options.include_usage: true`, so a streamed answer always reports usage. */
function forceUsage(req: PolicyRequest, inserts: [string, string][]): Splice[] {
  const f = req.scan.fields.get("stream_options");
  const value = '{"include_usage":true}';
  if (!f) {
    inserts.push(["stream_options", value]);
    return [];
  }
  if (isNull(req.body, f)) return [replacementSplice(f, value)];
  const inner = scanNested(req.body, f);
  if (!inner) throw new PolicyViolation("malformed", "stream_options must be an object");
  const usage = inner.fields.get("include_usage");
  if (!usage) return [insertionSplice(inner, [["include_usage", "true"]])];
  return readBoolean(req.body, usage) === true ? [] : [replacementSplice(usage, "true")];
}

/** Applies the policy to a scanned body; throws PolicyViolation (a 400 or 403 for the caller). */
export function applyRequestPolicy(req: PolicyRequest, policy: RequestPolicy): PolicyResult {
  const { shape, body, scan } = req;
  for (const key of scan.fields.keys()) {
    const name = CHECKED[shape].get(fold(key));
    if (name !== undefined && name !== key) throw new PolicyViolation("malformed", "a field name differs from a checked one only in case");
  }
  const model = checkModel(req, policy);
  if (!policy.toolsAllowed) {
    for (const name of TOOL_FIELDS[shape]) {
      const f = scan.fields.get(name);
      if (f && !isNull(body, f)) throw new PolicyViolation("tools", "tools not allowed for this token");
    }
  }
  const endpoint = endpointOf(shape, req.path);
  const insertAs = INSERT_CAP_AS[endpoint] === undefined ? undefined : (req.capField ?? INSERT_CAP_AS[endpoint]);
  const inserts: [string, string][] = []; // top-level fields to add, in one splice
  const splices =
    shape === "gemini"
      ? checkGeminiCaps(req, policy, endpoint === "generate", inserts)
      : checkCaps(body, scan, CAP_FIELDS[shape], N_FIELDS[shape], policy, insertAs, inserts);
  const stream = scan.fields.get("stream");
  let usageSpliced = false;
  if (policy.forceStreamUsage && shape === "openai" && (endpoint === "chat" || endpoint === "completions") && stream && readBoolean(body, stream) === true) {
    const forced = forceUsage(req, inserts);
    usageSpliced = forced.length > 0 || inserts.some(([name]) => name === "stream_options");
    splices.push(...forced);
  }
  if (inserts.length > 0) splices.push(insertionSplice(scan, inserts));
  const out = splices.length === 0 ? body : applySplices(body, splices);
  const flag = usageSpliced ? { usageSpliced: true as const } : {};
  if (!policy.measure) return { body: out, model, ...flag };
  // Gemini keeps its caps and candidateCount in generationConfig.
  const gc = shape === "gemini" ? oneOf(scan, ["generationConfig", "generation_config"]) : undefined;
  const fields = shape !== "gemini" ? scan : gc && !isNull(body, gc) ? scanNested(body, gc) : undefined;
  return { body: out, model, ...flag, ...outputBound(body, fields, CAP_FIELDS[shape], N_FIELDS[shape], policy.maxOutputTokens, insertAs !== undefined) };
}
