/**
 * Validation of the limits a token carries, shared by issued tokens (IssueToken input) and
 * sealed tokens (claims): one definition of what a valid limit is.
 */
import { RelayError } from "../errors.js";

export interface Limits {
  subject: string;
  upstreamKey: string | undefined;
  maxCalls: number | undefined;
  models: string[];
  paths: string[];
  origins: string[];
  maxBodyBytes: number | undefined;
}

/** Longest lifetime of any token. */
export const MAX_TTL_MS = 366 * 24 * 3600 * 1000;
const MAX_LIST = 100;

export function validateLimits(l: Limits): void {
  const key = l.upstreamKey;
  if (key !== undefined && (key.length === 0 || key.length > 4096 || /[\0-\x20\x7f]/.test(key))) {
    throw new RelayError("bad_request", "upstream_key must be 1-4096 printable characters without spaces");
  }
  if (l.maxCalls !== undefined && (!Number.isSafeInteger(l.maxCalls) || l.maxCalls < 1)) {
    throw new RelayError("bad_request", "max_calls must be at least 1");
  }
  if (l.maxBodyBytes !== undefined && (!Number.isSafeInteger(l.maxBodyBytes) || l.maxBodyBytes < 1)) {
    throw new RelayError("bad_request", "max_body_bytes must be positive");
  }
  if (l.subject.length > 256) throw new RelayError("bad_request", "subject is at most 256 characters");
  // PostgreSQL text cannot hold NUL: refused here, not failed later in the database (a 5xx).
  if (l.subject.includes("\0")) throw new RelayError("bad_request", "subject must not contain NUL");
  checkList("models", l.models, (m) => m.length > 0 && m.length <= 256 && !/[\0-\x1f]/.test(m));
  checkList("paths", l.paths, (p) => /^\/[A-Za-z0-9\-._~/:]{0,255}$/.test(p) && !p.includes(".."));
  checkList("origins", l.origins, isOrigin);
}

function checkList(name: string, list: unknown, ok: (v: string) => boolean): void {
  if (!Array.isArray(list) || list.length > MAX_LIST) throw new RelayError("bad_request", `${name}: at most ${MAX_LIST} entries`);
  for (const v of list) if (typeof v !== "string" || !ok(v)) throw new RelayError("bad_request", `${name}: invalid entry`);
}

function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === "https:" || u.protocol === "http:") && u.origin === v;
  } catch {
    return false;
  }
}
