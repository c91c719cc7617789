/**
 * Minting an issued token (DESIGN 3.1): validate the request, store the SHA-256 of a fresh
 * secret with the limits and the encrypted upstream key, and hand the secret out once.
 */
import type { Db } from "../db/client.js";
import { insertToken } from "../db/queries/tokens.js";
import type { TokenRow } from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import { maskSecret, type SecretBox } from "../keys/secret-box.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { hashSecret, newIssuedSecret, newTokenId } from "./issued-token.js";
import { MAX_TTL_MS, validateLimits } from "./validate-limits.js";
import { limitsOf, type TokenLimitValues } from "./token-limits.js";

export const TOKEN_KIND_ISSUED = 1;
export const DEFAULT_TTL_MS = 3600 * 1000;

/** The token's limits (src/tokens/token-limits.ts) and what identifies and authorises it. */
export interface IssueInput extends TokenLimitValues {
  provider: string;
  upstreamKey: string | undefined;
  pool: string | undefined;
  subject: string;
  /** The plan whose quotas the subject's calls count against (it must exist; src/plans). */
  plan?: string | undefined;
  expiresAt: Date;
}

export interface Issued {
  secret: string;
  row: TokenRow;
}

export async function issueToken(db: Db, box: SecretBox, providers: ProviderRegistry, pools: PoolRegistry, input: IssueInput): Promise<Issued> {
  if (!providers.get(input.provider)) throw new RelayError("bad_request", "unknown provider");
  if (input.pool !== undefined) {
    if (pools.providerOf(input.pool) !== input.provider) throw new RelayError("bad_request", "no such pool for this provider");
  } else if (input.upstreamKey === undefined) {
    throw new RelayError("bad_request", "upstream_key or pool is required");
  }
  const key = input.upstreamKey;
  validateLimits(input);
  const ttl = input.expiresAt.getTime() - Date.now();
  if (!(ttl > 0) || ttl > MAX_TTL_MS) throw new RelayError("bad_request", "expiry must be in the future and within 366 days");

  const id = newTokenId();
  const secret = newIssuedSecret();
  const row = await insertToken(db, {
    id,
    kind: TOKEN_KIND_ISSUED,
    secretHash: hashSecret(secret),
    provider: input.provider,
    subject: input.subject,
    upstreamKeyEnc: key === undefined ? null : box.seal(key, id),
    upstreamKeyHint: key === undefined ? "" : maskSecret(key),
    pool: input.pool ?? null,
    plan: input.plan ?? null,
    ...limitsOf(input),
    expiresAt: input.expiresAt,
  });
  return { secret, row };
}
