/**
 * What the relay needs to know about a token to check a request, independent of how the token
 * was minted (issued or sealed: DESIGN 3.2 "one check path").
 */
import type { NewTokenRow, TokenRow } from "../db/schema/index.js";
import type { SecretBox } from "../keys/secret-box.js";

export interface TokenMeta {
  id: string;
  kind: number;
  provider: string;
  subject: string;
  /** Decrypted inline upstream key (memory only). */
  upstreamKey: string | undefined;
  pool: string | undefined;
  maxCalls: number | null;
  /** Empty set: any model. */
  models: ReadonlySet<string>;
  /** Empty: any path. Each entry is a prefix starting with `/`. */
  paths: readonly string[];
  /** Empty set: any origin. */
  origins: ReadonlySet<string>;
  maxBodyBytes: number | null;
  /** Requests per minute (approximate, src/limits); null: no per-token rate. */
  rpm: number | null;
  /** Cap on the output tokens a request may ask for; null: none. */
  maxOutputTokens: number | null;
  /** Cap on `n` (choices per request); null: none. */
  maxN: number | null;
  /** Tools, functions and similar fields are refused unless true. */
  toolsAllowed: boolean;
  /** LLM tokens (prompt + completion) the token may spend in all; null: no budget. */
  budgetTokens: number | null;
  /** RFC 7638 thumbprint of the client key the token is bound to (DPoP); null: a bearer token. */
  bindJkt: string | null;
  expiresAtMs: number;
  /** Sealed tokens: the key id that opened it, and the row its first use inserts. */
  sealed?: { kid: string; firstRow: NewTokenRow };
}

export function tokenMetaFromRow(row: TokenRow, box: SecretBox): TokenMeta {
  return {
    id: row.id,
    kind: row.kind,
    provider: row.provider,
    subject: row.subject,
    upstreamKey: row.upstreamKeyEnc ? box.open(row.upstreamKeyEnc, row.id) : undefined,
    pool: row.pool ?? undefined,
    maxCalls: row.maxCalls,
    models: new Set(row.models),
    paths: row.paths,
    origins: new Set(row.origins),
    maxBodyBytes: row.maxBodyBytes,
    rpm: row.rpm,
    maxOutputTokens: row.maxOutputTokens,
    maxN: row.maxN,
    toolsAllowed: row.toolsAllowed,
    budgetTokens: row.budgetTokens,
    bindJkt: row.bindJkt,
    expiresAtMs: row.expiresAt.getTime(),
  };
}
