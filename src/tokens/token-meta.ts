/**
 * What the relay needs to know about a token to check a request, independent of how the token
 * was minted (issued or sealed: DESIGN 3.2 "one check path").
 */
import type { NewTokenRow, TokenRow } from "../db/schema/index.js";
import type { SecretBox } from "../keys/secret-box.js";
import { metaLimitsOf, type MetaLimits } from "./token-limits.js";

/** The limits (TokenMeta extends MetaLimits: one field per row of src/tokens/token-limits.ts) and the rest. */
export interface TokenMeta extends MetaLimits {
  id: string;
  kind: number;
  provider: string;
  subject: string;
  /** The plan whose per-subject quotas the calls count against (src/plans); undefined: none. */
  plan: string | undefined;
  /** Decrypted inline upstream key (memory only). */
  upstreamKey: string | undefined;
  pool: string | undefined;
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
    plan: row.plan ?? undefined,
    upstreamKey: row.upstreamKeyEnc ? box.open(row.upstreamKeyEnc, row.id) : undefined,
    pool: row.pool ?? undefined,
    ...metaLimitsOf(row),
    expiresAtMs: row.expiresAt.getTime(),
  };
}
