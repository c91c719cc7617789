/**
 * The audit log of admin and system actions (who, what, when; DESIGN 6 and 12). Callers pass ids
 * only, never secret values; as a second guard, anything in `target` or `detail` that looks like
 * a token secret, a JWT/JWE, a bearer credential or an API key is masked before it is stored.
 *
 * `record` is awaited by admin rpcs after a successful change and rejects when the row cannot
 * be written, so an unaudited change surfaces as an error. Callers on a hot path (automatic
 * key disabling) should `void audit.record(...).catch(log)` instead of awaiting it.
 */
import type { Db } from "../db/client.js";
import { decodePageToken, integerField, pageOf, pageSizeOf } from "../db/page-cursor.js";
import { insertAuditEvent, listAuditEvents } from "../db/queries/audit.js";

export interface AuditEntry {
  /** Who acted: "admin" (the admin key), "system" (the relay itself), or an issuer name. */
  actor: string;
  /** What happened, named after the rpc or system action: "IssueToken", "key.disabled". */
  action: string;
  /** What was acted on, by id: a token id, an issuer name, a provider id, a key id. */
  target?: string;
  /** A short, secret-free description: "kid=kid_...", "reason=401 from upstream". */
  detail?: string;
}

export interface AuditEvent {
  id: string;
  at: Date;
  actor: string;
  action: string;
  target: string;
  detail: string;
}

export interface AuditPage {
  events: AuditEvent[];
  /** "" on the last page. */
  nextPageToken: string;
}

const MAX_FIELD = 500;

export class AuditLog {
  constructor(private readonly db: Db) {}

  async record(entry: AuditEntry): Promise<void> {
    await insertAuditEvent(this.db, {
      actor: clip(entry.actor, 100),
      action: clip(entry.action, 100),
      target: clip(maskSecrets(entry.target ?? "", false), MAX_FIELD),
      detail: clip(maskSecrets(entry.detail ?? "", true), MAX_FIELD),
    });
  }

  /** One page, newest first (src/db/page-cursor.ts: `pageSize` 0 means 50; at most 500). */
  async list(pageSize: number, pageToken = ""): Promise<AuditPage> {
    const size = pageSizeOf(pageSize);
    const beforeId = pageToken ? integerField(decodePageToken(pageToken, 1)[0]!, 1) : undefined;
    const page = pageOf(await listAuditEvents(this.db, size + 1, beforeId), size, (last) => [last.id]);
    return { events: page.rows.map((r) => ({ ...r, id: String(r.id) })), nextPageToken: page.nextPageToken };
  }
}

/**
 * Secret shapes masked wherever they appear. Ids (`tok_…`, `key_…`, `kid_…`) are short and
 * never match.
 */
const SECRET_SHAPES: readonly RegExp[] = [
  /\brai_[0-9A-Za-z]{20,}/g, // issued token secrets
  /\beyJ[\w-]*(?:\.[\w-]*){2,4}/g, // JWT / compact JWE (sealed tokens)
  /\bbearer\s+\S+/gi,
  /\b(?:sk|rk|pk)-[\w-]{8,}/g, // OpenAI, Anthropic (sk-ant-), DeepSeek, ...
  /\bAIza[\w-]{20,}/g, // Google
  /\b(?:gsk|xai|pplx|hf|ghp|gho|glpat|github_pat|r8)[_-][\w-]{16,}/g,
];
/** In free text also any long base64/base64url/hex run mixing letters and digits. */
const LONG_OPAQUE = /[A-Za-z0-9_+/=-]{32,}/g;

/** Masks values shaped like secrets; `freeText` also masks long opaque strings. */
export function maskSecrets(text: string, freeText: boolean): string {
  let out = text;
  for (const shape of SECRET_SHAPES) out = out.replace(shape, "[redacted]");
  if (freeText) out = out.replace(LONG_OPAQUE, (m) => (/[0-9]/.test(m) && /[A-Za-z]/.test(m) ? "[redacted]" : m));
  return out;
}

function clip(s: string, max: number): string {
  return s.length > max ? s.slice(0, max) : s;
}
