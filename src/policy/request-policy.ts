/**
 * The body half of a token's request policy (DESIGN 3.4, issue 9): pinned models (checked
 * where the provider reads its model: the path, the body, fields that reroute; issue 18), an
 * output cap, a cap on `n`, no tools unless allowed, and usage forced on for streams that
 * report it only when asked; with `measure`, what the request lets the model generate (for
 * budget reservations). Which fields those are is the API shape's data (ShapePolicy,
 * src/providers/shapes/*.ts): nothing here names a provider.
 * Works on a scanTopLevel result (duplicate and escaped top-level keys are already handled
 * there) and returns the original bytes or a spliced copy; nothing is re-serialised. Pure.
 *
 * Caps are inserted only on the generation endpoints named below, since other endpoints
 * (embeddings, images, count_tokens, batches) refuse unknown fields; on those, fields that are
 * present are still checked, and the endpoint allowlist is what keeps a token off them.
 */
import {
  JsonScanError,
  applySplices,
  insertionSplice,
  isNull,
  readArrayLength,
  readBoolean,
  readNumber,
  readString,
  replacementSplice,
  scanObjectValue,
  type ScanResult,
  type Splice,
  type TopLevelField,
} from "./json-scan.js";
import { endpointOf } from "./endpoints.js";
import { MAX_CHOICES, outputBound } from "./output-bound.js";
import type { ShapePolicy, UsageOption } from "./shape-policy.js";

export interface RequestPolicy {
  models?: ReadonlySet<string>;
  maxOutputTokens?: number;
  maxN?: number;
  toolsAllowed: boolean;
  forceStreamUsage: boolean;
  /** Report the request's output cap and choices (PolicyResult), for budget reservations. */
  measure?: boolean;
  /**
   * An output cap inserted where the body names none, as `maxOutputTokens` is, but no limit: a
   * body's own cap, however large, stands (a budget's reservation reads it).
   */
  defaultOutputTokens?: number;
}

export interface PolicyRequest {
  /** The API shape's policy data (ApiShape.policy). */
  shape: ShapePolicy;
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

export type PolicyViolationKind = "model" | "max_tokens" | "n" | "tools" | "host" | "malformed";

export type PolicyMessage =
  | "model not allowed for this token"
  | "output token limit above this token's cap"
  | "output token limit must be a number"
  | "n above this token's cap"
  | "n above this token's cap: the count is per instance"
  | "n above this token's cap: the provider's default count applies when the body names none"
  | "n must be a number"
  | "tools not allowed for this token"
  | `${string} is not allowed through the relay: the host's memory is shared`
  | "model must be a string"
  | `${string} must be an object`
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

/**
 * Checked top-level names by their case fold, per shape. Go's encoding/json (Ollama and other
 * OpenAI-compatible servers) matches keys case-insensitively, Unicode folds included ("MODEL",
 * "ſtream" with a long s): a key that folds onto a checked name must be that name exactly.
 */
const fold = (key: string): string => key.toUpperCase().toLowerCase();
const checkedNames = new WeakMap<ShapePolicy, Map<string, string>>();

function checkedOf(shape: ShapePolicy): Map<string, string> {
  let names = checkedNames.get(shape);
  if (names === undefined) {
    const usage = shape.endpoints.flatMap((e) => (e.usageOption ? [e.usageOption.field] : []));
    const caps = shape.capsIn ?? [...shape.capFields, ...shape.choiceFields];
    const per = shape.choicesPer === undefined ? [] : [shape.choicesPer];
    const list = ["model", ...(shape.streamField ? [shape.streamField] : []), ...usage, ...shape.toolFields, ...caps, ...per, ...(shape.hostFields ?? [])];
    checkedNames.set(shape, (names = new Map(list.map((name) => [fold(name), name]))));
  }
  return names;
}

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
    if (f && policy.models && (isNull(req.body, f) || readString(req.body, f) !== model))
      throw new PolicyViolation("model", "model not allowed for this token");
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
function checkCaps(
  body: Buffer,
  scan: ScanResult,
  capFields: readonly string[],
  nFields: readonly string[],
  policy: RequestPolicy,
  insertAs: string | undefined,
  inserts: [string, string][],
): Splice[] {
  const splices: Splice[] = [];
  const cap = policy.maxOutputTokens ?? policy.defaultOutputTokens;
  if (cap !== undefined) {
    let present = false;
    for (const name of capFields) {
      const f = scan.fields.get(name);
      if (!f) continue;
      present = true;
      if (isNull(body, f)) splices.push(replacementSplice(f, String(cap)));
      // A default cap is no limit on what the body asks (its reservation reads it), but the
      // body's own must still be a number from 0 (Ollama's -1, or "65536", would be unbounded).
      else if (!withinCap(body, f, policy.maxOutputTokens ?? Number.POSITIVE_INFINITY, "max_tokens")) {
        throw new PolicyViolation("max_tokens", "output token limit above this token's cap");
      }
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

/**
 * A number from 0 to the cap (Infinity from 1e999 is above; a negative one is no limit to
 * Ollama's `num_predict`); anything not a number is refused.
 */
function withinCap(body: Buffer, f: TopLevelField, cap: number, kind: "max_tokens" | "n"): boolean {
  const v = readNumber(body, f);
  if (v === undefined) throw new PolicyViolation(kind, kind === "n" ? "n must be a number" : "output token limit must be a number");
  return v >= 0 && v <= cap;
}

/**
 * Caps kept in one object of the body (Gemini's generationConfig, under either of its names):
 * each name among aliases at most once, and an absent object made to hold an inserted cap.
 */
function checkNestedCaps(
  req: PolicyRequest,
  policy: RequestPolicy,
  capsIn: readonly string[],
  insertAs: string | undefined,
  inserts: [string, string][],
): Splice[] {
  const { shape } = req;
  const outer = oneOf(req.scan, capsIn);
  if (!outer || isNull(req.body, outer)) {
    const cap = policy.maxOutputTokens ?? policy.defaultOutputTokens;
    if (insertAs === undefined || cap === undefined) return [];
    const value = JSON.stringify({ [insertAs]: cap });
    if (!outer) {
      inserts.push([capsIn[0]!, value]);
      return [];
    }
    return [replacementSplice(outer, value)];
  }
  const inner = scanNested(req.body, outer);
  if (!inner) throw new PolicyViolation("malformed", `${capsIn[0]!} must be an object`);
  oneOf(inner, shape.capFields);
  oneOf(inner, shape.choiceFields);
  const innerInserts: [string, string][] = [];
  const splices = checkCaps(req.body, inner, shape.capFields, shape.choiceFields, policy, insertAs, innerInserts);
  if (innerInserts.length > 0) splices.push(insertionSplice(inner, innerInserts));
  return splices;
}

/** The usage option set on (`stream_options.include_usage: true`), so a streamed answer always reports usage. */
function forceUsage(req: PolicyRequest, option: UsageOption, inserts: [string, string][]): Splice[] {
  const f = req.scan.fields.get(option.field);
  const value = JSON.stringify({ [option.key]: true });
  if (!f) {
    inserts.push([option.field, value]);
    return [];
  }
  if (isNull(req.body, f)) return [replacementSplice(f, value)];
  const inner = scanNested(req.body, f);
  if (!inner) throw new PolicyViolation("malformed", `${option.field} must be an object`);
  const usage = inner.fields.get(option.key);
  if (!usage) return [insertionSplice(inner, [[option.key, "true"]])];
  return readBoolean(req.body, usage) === true ? [] : [replacementSplice(usage, "true")];
}

/** Applies the policy to a scanned body; throws PolicyViolation (a 400 or 403 for the caller). */
export function applyRequestPolicy(req: PolicyRequest, policy: RequestPolicy): PolicyResult {
  const { shape, body, scan } = req;
  for (const key of scan.fields.keys()) {
    const name = checkedOf(shape).get(fold(key));
    if (name !== undefined && name !== key) throw new PolicyViolation("malformed", "a field name differs from a checked one only in case");
  }
  const model = checkModel(req, policy);
  if (!policy.toolsAllowed) {
    for (const name of shape.toolFields) {
      const f = scan.fields.get(name);
      if (f && !isNull(body, f)) throw new PolicyViolation("tools", "tools not allowed for this token");
    }
  }
  for (const name of shape.hostFields ?? []) {
    const f = scan.fields.get(name);
    if (f && !isNull(body, f)) throw new PolicyViolation("host", `${name} is not allowed through the relay: the host's memory is shared`);
  }
  const endpoint = endpointOf(shape, req.path);
  const insertAs = endpoint === undefined ? undefined : (req.capField ?? endpoint.capField);
  const inserts: [string, string][] = []; // top-level fields to add, in one splice
  const splices = shape.capsIn
    ? checkNestedCaps(req, policy, shape.capsIn, insertAs, inserts)
    : checkCaps(body, scan, shape.capFields, shape.choiceFields, policy, insertAs, inserts);
  const stream = shape.streamField === undefined ? undefined : scan.fields.get(shape.streamField);
  const option = endpoint?.usageOption;
  let usageSpliced = false;
  if (policy.forceStreamUsage && option && stream && readBoolean(body, stream) === true) {
    const forced = forceUsage(req, option, inserts);
    usageSpliced = forced.length > 0 || inserts.some(([name]) => name === option.field);
    splices.push(...forced);
  }
  if (inserts.length > 0) splices.push(insertionSplice(scan, inserts));
  const out = splices.length === 0 ? body : applySplices(body, splices);
  const flag = usageSpliced ? { usageSpliced: true as const } : {};
  const multiplied = shape.choicesPer !== undefined || shape.defaultChoices !== undefined;
  if (!policy.measure && !(multiplied && policy.maxN !== undefined)) return { body: out, model, ...flag };
  // Caps and choice counts may live in one object (Gemini's generationConfig).
  const outer = shape.capsIn ? oneOf(scan, shape.capsIn) : undefined;
  const fields = !shape.capsIn ? scan : outer && !isNull(body, outer) ? scanNested(body, outer) : undefined;
  const choices = multiplied ? totalChoices(req, fields, policy.maxN) : undefined;
  if (!policy.measure) return { body: out, model, ...flag };
  const bound = outputBound(body, fields, shape.capFields, shape.choiceFields, policy.maxOutputTokens ?? policy.defaultOutputTokens, insertAs !== undefined);
  return { body: out, model, ...flag, ...bound, ...(choices === undefined ? {} : { choices }) };
}

/**
 * The choices a call makes where they multiply (ShapePolicy.choicesPer, defaultChoices): the
 * count it names (else the provider's default) times the elements of `choicesPer`, refused above
 * `maxN`. A count that is not a number was refused under maxN (checkCaps) and counts the most
 * a reservation does otherwise.
 */
function totalChoices(req: PolicyRequest, fields: ScanResult | undefined, maxN: number | undefined): number {
  const { shape, body } = req;
  let per: number | undefined;
  for (const name of shape.choiceFields) {
    const f = fields?.fields.get(name);
    if (f === undefined || isNull(body, f)) continue;
    const v = readNumber(body, f);
    per = v === undefined ? MAX_CHOICES : Math.max(0, Math.ceil(v));
  }
  const named = per !== undefined;
  per ??= shape.defaultChoices ?? 1;
  const list = shape.choicesPer === undefined ? undefined : req.scan.fields.get(shape.choicesPer);
  // Not an array (the provider refuses it), or empty: as one.
  const elements = (list && readArrayLength(body, list)) || 1;
  const total = per * elements;
  if (maxN !== undefined && total > maxN) {
    throw new PolicyViolation(
      "n",
      named ? "n above this token's cap: the count is per instance" : "n above this token's cap: the provider's default count applies when the body names none",
    );
  }
  return Math.max(1, total);
}
