/**
 * The body half of a token's request policy for a multipart body (issue 25), on the text
 * fields in front of its first file part (src/relay/multipart-model.ts): the same rules as for
 * a JSON body (src/policy/request-policy.ts), read from form fields. A pinned model, a cap on
 * output tokens and on `n`, no tools unless allowed. Nothing is inserted: the body passes
 * byte for byte. A checked field behind the first file cannot be read before the upload is
 * sent, so one there cuts the upload (403) before its end reaches the provider.
 *
 * Form clients name nested values `tools[0][type]` or `image[]`: a field counts under the name
 * before its first `[`.
 */
import { isUtf8 } from "node:buffer";
import { RelayError } from "../errors.js";
import type { ModelLocation } from "../providers/types.js";
import type { ShapePolicy } from "../policy/shape-policy.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { malformed, type Field, type Leading, type PartHead } from "./multipart-model.js";

const MODEL_NOT_ALLOWED = "model not allowed for this token";
/** A pin found no model in front of the first file: the form's order is the client's to fix. */
export const MODEL_FIRST = "multipart body: model must come before the first file part";
const LATE_FIELD = "multipart body: a checked field must come before the first file part";

const fold = (s: string): string => s.toUpperCase().toLowerCase();
const baseName = (name: string): string => {
  const i = name.indexOf("[");
  return i === -1 ? name : name.slice(0, i);
};

export interface UploadRules {
  /** The model the provider will run, as far as the form (or the path) says. */
  model: string | undefined;
  /** Field names (by case fold) a later part may not carry: checked here, unseen there. */
  watched: ReadonlySet<string>;
}

interface Rule {
  kind: "model" | "tools" | "cap" | "n";
  name: string;
}

/** The fields this token's rules read, by case fold. */
function rulesOf(token: TokenMeta, shape: ShapePolicy, where: ModelLocation): Map<string, Rule> {
  const rules = new Map<string, Rule>();
  const add = (kind: Rule["kind"], name: string): void => void rules.set(fold(name), { kind, name });
  if (token.models.size > 0) {
    add("model", "model");
    for (const name of where.rerouting ?? []) add("model", name);
  }
  if (!token.toolsAllowed) for (const name of shape.toolFields) add("tools", name);
  if (token.maxOutputTokens !== null) for (const name of shape.capFields) add("cap", name);
  if (token.maxN !== null) for (const name of shape.choiceFields) add("n", name);
  return rules;
}

function text(f: Field): string {
  if (!isUtf8(f.value)) throw malformed("a checked field must be UTF-8");
  return f.value.toString("utf8");
}

/** A whole number at or below `cap`, as a form field writes it. */
function withinCap(f: Field, cap: number, what: string): boolean {
  const v = text(f).trim();
  if (!/^\d{1,15}$/.test(v)) throw new RelayError("permission_denied", `${what} must be a number`);
  return Number(v) <= cap;
}

/**
 * Checks the leading fields against the token; returns the model and the names a later part
 * must not carry. `pathModel` wins where the provider routes by the path (Azure deployments).
 */
export function checkUploadFields(token: TokenMeta, shape: ShapePolicy, where: ModelLocation, leading: Leading, pathModel: string | undefined): UploadRules {
  const rules = rulesOf(token, shape, where);
  const seen = new Set<string>();
  let bodyModel: string | undefined;
  for (const f of leading.fields) {
    const name = baseName(f.name);
    const rule = rules.get(fold(name)) ?? (fold(name) === "model" ? { kind: "model" as const, name: "model" } : undefined);
    if (rule === undefined) continue;
    if (name !== rule.name) throw malformed("a field name differs from a checked one only in case");
    if (rule.kind === "model" && f.name === "model") {
      // Readers differ on which of two values wins.
      if (seen.has("model")) throw malformed("a checked field is given twice");
      seen.add("model");
      bodyModel = text(f);
      continue;
    }
    if (!rules.has(fold(name))) continue; // `model` without a pin: read for the record only
    if (rule.kind === "model" || rule.kind === "tools") {
      // A rerouting field, or a tool, under a token that allows neither.
      if (f.value.length > 0) throw new RelayError("permission_denied", rule.kind === "tools" ? "tools not allowed for this token" : MODEL_NOT_ALLOWED);
    } else if (rule.kind === "cap") {
      if (!withinCap(f, token.maxOutputTokens!, "output token limit")) throw new RelayError("permission_denied", "output token limit above this token's cap");
    } else if (!withinCap(f, token.maxN!, "n")) {
      throw new RelayError("permission_denied", "n above this token's cap");
    }
  }
  const model = pathModel ?? (where.inBody ? bodyModel : undefined);
  if (token.models.size > 0) {
    if (pathModel !== undefined && bodyModel !== undefined && bodyModel !== pathModel) throw new RelayError("permission_denied", MODEL_NOT_ALLOWED);
    if (model === undefined) throw new RelayError("permission_denied", leading.stop === "end" ? MODEL_NOT_ALLOWED : MODEL_FIRST);
    if (!token.models.has(model)) throw new RelayError("permission_denied", MODEL_NOT_ALLOWED);
  }
  return { model, watched: new Set(rules.keys()) };
}

/** The check a part behind the leading fields gets (src/relay/multipart-model.ts PartWatcher). */
export function lateFieldCheck(watched: ReadonlySet<string>): ((head: PartHead) => void) | undefined {
  if (watched.size === 0) return undefined;
  return (head) => {
    if (watched.has(fold(baseName(head.name)))) throw new RelayError("permission_denied", LATE_FIELD);
  };
}
