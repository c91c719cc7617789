/**
 * Objects a provider stores for later calls (stored responses, files, uploads; issue 25, item 3)
 * as data on an API shape: which calls create one and where their answer names its id, which
 * calls read or act on one, which calls list every subject's, and which request fields name
 * one. The relay enforces them (src/relay/object-ownership.ts); this file only matches calls.
 */
import { isObject } from "./shapes/usage-meter.js";

/** A POST that creates an object. */
export interface CreateRule {
  /** The path (normal form, below the provider root). */
  path: RegExp;
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

export interface OwnedObjectRules {
  creates: readonly CreateRule[];
  uses: readonly UseRule[];
  /** GET paths that list every subject's objects: the relay cannot filter them, so they are refused. */
  lists: readonly RegExp[];
  /**
   * JSON request body fields that name an object (a string, or an object with a string `id`),
   * read at the top level, or at any depth when `deep`.
   */
  refs: readonly { field: string; deep?: boolean }[];
}

/** The rule a call creates an object under, if any. */
export function createRuleOf(rules: OwnedObjectRules, method: string, path: string, body: Buffer): CreateRule | undefined {
  if (method !== "POST") return undefined;
  const rule = rules.creates.find((r) => r.path.test(path));
  if (rule?.onlyIf === undefined) return rule;
  // Read only when the field may be there (written plainly, or under an escape).
  if (!body.includes(`"${rule.onlyIf}"`) && !body.includes(ESCAPE)) return undefined;
  const json = parsed(body);
  return isObject(json) && json[rule.onlyIf] === true ? rule : undefined;
}

/** The id of the object a call reads or acts on, if it names one. */
export function usedObjectOf(rules: OwnedObjectRules, path: string): string | undefined {
  for (const rule of rules.uses) {
    const id = rule.path.exec(path)?.[1];
    if (id !== undefined && id !== "" && rule.notIds?.includes(id.toLowerCase()) !== true) return id;
  }
  return undefined;
}

/** A GET that lists the objects of every subject. */
export function isObjectList(rules: OwnedObjectRules, method: string, path: string): boolean {
  return method === "GET" && rules.lists.some((p) => p.test(path));
}

/**
 * The ids a JSON body names in the rules' fields. The bytes are parsed only when one of the
 * field names, or an escape that could spell one, appears in them: other bodies cost a scan.
 */
export function referencedObjects(rules: OwnedObjectRules, body: Buffer): string[] {
  if (rules.refs.length === 0 || body.length === 0) return [];
  if (!body.includes(ESCAPE) && !rules.refs.some((r) => body.includes(`"${r.field}"`))) return [];
  const json = parsed(body);
  if (!isObject(json)) return [];
  const ids: string[] = [];
  for (const ref of rules.refs) {
    if (!ref.deep) {
      addRef(ids, json[ref.field]);
      continue;
    }
    // Depth-first without recursion: a deeply nested body cannot overflow the stack.
    const pending: unknown[] = [json];
    for (let v = pending.pop(); v !== undefined; v = pending.pop()) {
      if (Array.isArray(v)) pending.push(...v);
      else if (isObject(v)) {
        for (const [key, inner] of Object.entries(v)) {
          if (key === ref.field) addRef(ids, inner);
          else if (typeof inner === "object" && inner !== null) pending.push(inner);
        }
      }
    }
  }
  return ids;
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

/** `\u00`: an escape that could spell an ASCII character of a field name. */
const ESCAPE = "\\u00";

function addRef(ids: string[], v: unknown): void {
  const id = typeof v === "string" ? v : isObject(v) && typeof v.id === "string" ? v.id : undefined;
  if (id !== undefined && id !== "" && !ids.includes(id)) ids.push(id);
}

function parsed(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    // Not JSON: the provider refuses it too; nothing in it names an object.
    return undefined;
  }
}
