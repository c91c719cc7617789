/**
 * Objects a provider stores for later calls (stored responses, files, vector stores, batches;
 * issue 25, item 3) as data on an API shape: which calls create one and where their answer
 * names its id, which calls read or act on one, which calls list every subject's, which
 * request fields name one, and which paths keep state the rules do not track (refused by
 * default). The relay enforces them (src/relay/object-ownership.ts); this file only matches calls.
 */
import { isObject } from "./shapes/usage-meter.js";

/** A call whose answer names an object that becomes the caller's. */
export interface CreateRule {
  /** The path (normal form, below the provider root). */
  path: RegExp;
  /** Its method; POST when absent (a GET of a finished batch names the files it made). */
  method?: string;
  /** Where a JSON answer names the new object's id: keys from the top level. */
  idAt: readonly string[];
  /** Where the first event of a streamed (SSE) answer that names one does; absent: streams create none. */
  eventIdAt?: readonly string[];
  /** A top-level body field that must be `true` for the object to be stored (chat's `store`). */
  onlyIf?: string;
}

/** Calls that read or act on one object, whatever their method: capture group 1 is its id. */
export interface UseRule {
  path: RegExp;
  /** Words in the id's place that name an action on the collection, not an object (`/responses/compact`). */
  notIds?: readonly string[];
}

/** Paths (and methods, when given) where the provider keeps state. */
export interface StatefulPaths {
  path: RegExp;
  methods?: readonly string[];
}

/** A request body field that names objects. */
export interface RefRule {
  field: string;
  /** Read at any depth (outside `metadata`), not only at the top level. */
  deep?: boolean;
  /**
   * Where in the value the id is: capture group 1 (Gemini's `fileUri` is a URL ending in the
   * file's name). A value it does not match names no object the rules track.
   */
  idIn?: RegExp;
}

/**
 * Calls whose body takes input items, where an item may name a stored item by its id alone for
 * the provider to add its content (OpenAI's `{"type":"item_reference","id":…}`, or `{"id":…}`
 * with no type). No rule records item ids (a response holds many, each call adds more), so no
 * owner can be looked up: such an item is refused unless allowUnknown (itemReferenceIn).
 */
export interface ItemRefRule {
  /** The calls (POST; normal form path). */
  path: RegExp;
  /** Top-level arrays of items. */
  fields: readonly string[];
  /** The `type` of an item that names another by id. */
  type: string;
}

export interface OwnedObjectRules {
  creates: readonly CreateRule[];
  uses: readonly UseRule[];
  /** GET paths that list every subject's objects: the relay cannot filter them, so they are refused. */
  lists: readonly RegExp[];
  /**
   * JSON request body fields that name objects (a string, an object with a string `id`, or an
   * array of strings), read at the top level, or at any depth when `deep` (outside `metadata`,
   * whose keys are the client's own words).
   */
  refs: readonly RefRule[];
  /**
   * Keys a deep ref is not looked for below, besides `metadata`: values that are the client's own
   * words, not the provider's fields (Anthropic's `tool_use.input`: a tool's arguments may have
   * a `file_id` of the tool's own).
   */
  opaque?: readonly string[];
  /**
   * Deny by default. The families the rules above track: a call on one that no rule matches
   * (an unknown path or method) is refused.
   */
  tracked: readonly StatefulPaths[];
  /**
   * State no rule tracks (assistants, threads, fine-tuning jobs): every call on it may reach
   * another subject's, so it is refused whatever else matches its path.
   */
  untracked: readonly StatefulPaths[];
  /** Input items that name stored items by id alone (ItemRefRule). */
  itemRefs?: ItemRefRule;
}

/** What the rules say of one call by its method and path alone. */
export interface CallKind {
  /** A list of every subject's objects. */
  list: boolean;
  /** On state no rule tracks (isUntracked). */
  untracked: boolean;
  /** The objects its path names. */
  used: readonly string[];
  /** The create rules its method and path match, conditions not yet read. */
  creates: readonly CreateRule[];
  /** One of them has a condition on the body (chat's `store: true`). */
  conditional: boolean;
  /** Its body takes input items, which may name stored items by id (ItemRefRule). */
  takesItems: boolean;
}

/**
 * Most calls go to a few paths (`/v1/chat/completions`, `/v1/responses`), and matching one
 * against every rule costs more than reading a 1 KB body for references: the kinds of paths
 * that name no object are kept, a bounded number (paths with ids are all different).
 */
const KEPT_PATHS = 256;
const kinds = new WeakMap<OwnedObjectRules, Map<string, CallKind>>();

/**
 * The last kind asked for: a call asks twice (its check, then its tap) with the same path
 * string, which this answers without building and hashing the map's key again (issue 22).
 */
let last: { rules: OwnedObjectRules; method: string; path: string; kind: CallKind } | undefined;

/** The kind of a call to `path` with `method`. */
export function callKindOf(rules: OwnedObjectRules, method: string, path: string): CallKind {
  if (last !== undefined && last.path === path && last.method === method && last.rules === rules) return last.kind;
  const kind = kindOf(rules, method, path);
  last = { rules, method, path, kind };
  return kind;
}

function kindOf(rules: OwnedObjectRules, method: string, path: string): CallKind {
  let kept = kinds.get(rules);
  if (kept === undefined) kinds.set(rules, (kept = new Map()));
  const key = `${method} ${path}`;
  const known = kept.get(key);
  if (known !== undefined) return known;
  const creates = rules.creates.filter((r) => (r.method ?? "POST") === method && r.path.test(path));
  const kind: CallKind = {
    list: isObjectList(rules, method, path),
    untracked: isUntracked(rules, method, path),
    used: usedObjectsOf(rules, path),
    creates,
    conditional: creates.some((r) => r.onlyIf !== undefined),
    takesItems: method === "POST" && rules.itemRefs?.path.test(path) === true,
  };
  if (kind.used.length === 0) {
    if (kept.size >= KEPT_PATHS) kept.clear();
    kept.set(key, kind);
  }
  return kind;
}

/**
 * The rules a call creates objects under (none for most calls). `json` gives its body as
 * bodyJson does; it is asked only when a rule's condition needs it.
 */
export function createRulesOf(kind: CallKind, json: () => unknown): readonly CreateRule[] {
  if (!kind.conditional) return kind.creates;
  return kind.creates.filter((rule) => {
    if (rule.onlyIf === undefined) return true;
    const body = json();
    return isObject(body) && body[rule.onlyIf] === true;
  });
}

/** The ids of the objects a call's path reads or acts on (a vector store's file: both). */
export function usedObjectsOf(rules: OwnedObjectRules, path: string): string[] {
  const ids: string[] = [];
  for (const rule of rules.uses) {
    const id = rule.path.exec(path)?.[1];
    if (id !== undefined && id !== "" && rule.notIds?.includes(id.toLowerCase()) !== true && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** A GET that lists the objects of every subject. */
export function isObjectList(rules: OwnedObjectRules, method: string, path: string): boolean {
  return method === "GET" && rules.lists.some((p) => p.test(path));
}

/** A call on state that no rule tracks, or on a tracked family that no create, use or list rule covers. */
export function isUntracked(rules: OwnedObjectRules, method: string, path: string): boolean {
  const on = (s: StatefulPaths): boolean => s.path.test(path) && (s.methods === undefined || s.methods.includes(method));
  if (rules.untracked.some(on)) return true;
  if (!rules.tracked.some(on)) return false;
  if (rules.uses.some((r) => r.path.test(path))) return false;
  if (rules.creates.some((r) => (r.method ?? "POST") === method && r.path.test(path))) return false;
  return !isObjectList(rules, method, path);
}

/** The ids a body (as bodyJson gives it) names in the rules' fields. */
export function referencedObjects(rules: OwnedObjectRules, json: unknown): string[] {
  if (!isObject(json)) return [];
  const ids: string[] = [];
  const deep = new Map<string, RefRule>();
  for (const ref of rules.refs) {
    if (ref.deep) deep.set(ref.field, ref);
    else addRefs(ids, json[ref.field], ref.idIn);
  }
  if (deep.size === 0) return ids;
  const opaque = rules.opaque;
  // Depth-first without recursion: a deeply nested body cannot overflow the stack.
  const pending: unknown[] = [json];
  for (let v = pending.pop(); v !== undefined; v = pending.pop()) {
    if (Array.isArray(v)) pending.push(...v);
    else if (isObject(v)) {
      for (const key in v) {
        const inner = v[key];
        const ref = deep.get(key);
        if (ref !== undefined) addRefs(ids, inner, ref.idIn);
        if (typeof inner === "object" && inner !== null && key !== "metadata" && opaque?.includes(key) !== true) pending.push(inner);
      }
    }
  }
  return ids;
}

/**
 * Whether a body (`json` as bodyJson gives it for a call that takesItems, `body` its bytes)
 * names a stored item by id alone: an item of the rule's type, or one with an `id`, no `type`
 * and no `role` (a typeless item with a role is a message). The type is also looked for in the
 * bytes as a key and value (any depth): a nested duplicate key (`"type":"item_reference",
 * "type":"message"`) cannot hide it from a parser that keeps the first.
 */
export function itemReferenceIn(rule: ItemRefRule, json: unknown, body: Buffer): boolean {
  // Not parsed: no `"id"` key (spelled plainly or with escapes), so no item names one.
  if (!isObject(json)) return false;
  if (typedRef(rule).test(body.toString("latin1"))) return true;
  for (const field of rule.fields) {
    const items = json[field];
    if (!Array.isArray(items)) continue;
    for (const item of items) {
      if (!isObject(item)) continue;
      if (item.type === rule.type) return true;
      if ((item.type === undefined || item.type === null) && item.id !== undefined && item.role === undefined) return true;
    }
  }
  return false;
}

const typedRefs = new WeakMap<ItemRefRule, RegExp>();

/** `"type": "<rule.type>"` as JSON text: a string value cannot hold an unescaped quote, so only a real key and value match. */
function typedRef(rule: ItemRefRule): RegExp {
  let re = typedRefs.get(rule);
  if (re === undefined) typedRefs.set(rule, (re = new RegExp(`"type"\\s*:\\s*${quoted(rule.type)}`)));
  return re;
}

/** The value at `path` (keys from the top level) when it is a non-empty string. */
export function stringAt(value: unknown, path: readonly string[]): string | undefined {
  let v = value;
  for (const key of path) {
    if (!isObject(v)) return undefined;
    v = v[key];
  }
  return typeof v === "string" && v !== "" ? v : undefined;
}

function addRefs(ids: string[], v: unknown, idIn: RegExp | undefined): void {
  if (Array.isArray(v)) {
    for (const item of v) addRef(ids, item, idIn);
  } else addRef(ids, v, idIn);
}

function addRef(ids: string[], v: unknown, idIn: RegExp | undefined): void {
  let id = typeof v === "string" ? v : isObject(v) && typeof v.id === "string" ? v.id : undefined;
  if (id !== undefined && idIn !== undefined) id = idIn.exec(id)?.[1];
  if (id !== undefined && id !== "" && !ids.includes(id)) ids.push(id);
}

/**
 * A JSON body, parsed only when it may name something the rules read (with `conditions`, what
 * a create rule's condition reads too); else undefined.
 *
 * Per-call cost (issue 25 review): every OpenAI-shape call is checked, and nearly none names
 * an object. One regular expression over the body's bytes (as latin1: a copy, no UTF-8 decode)
 * looks for any field a ref reads, a create rule's condition set (`"store": true`; a Responses
 * body's `"store": false` is not worth a parse), or `\u0040`-`\u007f`, the escapes that could
 * spell a field name's letter or `_` (not Go's `\u003c` for `<`, common in prompts); only a body
 * where one appears is parsed. With `items` (a call that takesItems), an `"id"` key anywhere
 * too: only such a body may name a stored item (Responses bodies that pass output items back).
 */
export function bodyJson(rules: OwnedObjectRules, body: Buffer, conditions = true, items = false): unknown {
  return body.length > 0 && patternOf(rules, conditions, items).test(body.toString("latin1")) ? parsed(body) : undefined;
}

/** Per rules: the patterns with and without the create rules' conditions, and with and without `"id"` (items). */
const patterns = new WeakMap<OwnedObjectRules, RegExp[]>();

function patternOf(rules: OwnedObjectRules, conditions: boolean, items: boolean): RegExp {
  let all = patterns.get(rules);
  if (all === undefined) {
    const refs = ["\\\\u00[4-7]", ...new Set(rules.refs.map((r) => quoted(r.field)))];
    const flags = [...new Set(rules.creates.flatMap((r) => (r.onlyIf === undefined ? [] : [`${quoted(r.onlyIf)}\\s*:\\s*true`])))];
    const id = rules.itemRefs === undefined ? [] : ['"id"'];
    all = [[...refs], [...refs, ...flags], [...refs, ...id], [...refs, ...flags, ...id]].map((p) => new RegExp(p.join("|")));
    patterns.set(rules, all);
  }
  return all[(conditions ? 1 : 0) + (items ? 2 : 0)]!;
}

function quoted(field: string): string {
  return `"${field.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")}"`;
}

function parsed(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    // Not JSON: the provider refuses it too; nothing in it names an object.
    return undefined;
  }
}
