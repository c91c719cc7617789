/**
 * Validation of what a token carries, shared by issued tokens (IssueToken input) and sealed
 * tokens (claims): the subject, the inline upstream key, and the limits of the one limits
 * table (src/tokens/token-limits.ts), as the relay's 400s.
 */
import { RelayError } from "../errors.js";
import { planProblem } from "../plans/plan-name.js";
import { checkLimits, LimitError, type TokenLimitValues } from "./token-limits.js";

export interface Limits extends TokenLimitValues {
  subject: string;
  /** The plan the token names (src/plans), if any: it needs a subject. */
  plan?: string | undefined;
  upstreamKey: string | undefined;
}

/** Longest lifetime of any token. */
export const MAX_TTL_MS = 366 * 24 * 3600 * 1000;

export function validateLimits(l: Limits): void {
  const key = l.upstreamKey;
  if (key !== undefined && (key.length === 0 || key.length > 4096 || /[\0-\x20\x7f]/.test(key))) {
    throw new RelayError("bad_request", "upstream_key must be 1-4096 printable characters without spaces");
  }
  if (l.subject.length > 256) throw new RelayError("bad_request", "subject is at most 256 characters");
  // PostgreSQL text cannot hold NUL: refused here, not failed later in the database (a 5xx).
  if (l.subject.includes("\0")) throw new RelayError("bad_request", "subject must not contain NUL");
  const planIssue = planProblem(l.plan, l.subject);
  if (planIssue !== undefined) throw new RelayError("bad_request", planIssue);
  try {
    checkLimits(l);
  } catch (e) {
    if (e instanceof LimitError) throw new RelayError("bad_request", e.message);
    throw e;
  }
}
