/**
 * The one check path for relay tokens: authenticate a secret, count a call atomically, refund a
 * call that never reached the provider.
 *
 * A token's metadata (provider, limits, decrypted key) is cached for `cacheMs`; its counter,
 * expiry and revocation are not: every call runs the one atomic statement of `useCall`, which
 * refuses a revoked, expired or exhausted token, so revocation is immediate on every instance.
 */
import type { Db } from "../db/client.js";
import { findTokenBySecretHash, findTokenById, refundCall, useCall, useSealedCall } from "../db/queries/tokens.js";
import { invalidToken, RelayError } from "../errors.js";
import type { SecretBox } from "../keys/secret-box.js";
import { hashSecret, ISSUED_PREFIX, isWellFormedIssued } from "./issued-token.js";
import { looksSealed, openSealedToken, type SealedDeps } from "./sealed-token.js";
import { tokenMetaFromRow, type TokenMeta } from "./token-meta.js";

/** Longest token string the relay will look at (a sealed JWE with all claims fits easily). */
export const MAX_TOKEN_LENGTH = 4096;
const MAX_CACHE_ENTRIES = 50_000;

interface CacheEntry {
  meta: TokenMeta;
  until: number;
}

export interface UseOutcome {
  /** Calls left after this one; null when the token has no cap. */
  callsLeft: number | null;
}

export class TokenStore {
  readonly #cache = new Map<string, CacheEntry>();

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
    private readonly cacheMs: number,
    private readonly sealed: SealedDeps,
  ) {}

  /**
   * The token a secret names, or a 401 with a fixed message. Issued and sealed tokens end up
   * as the same TokenMeta, cached by the secret's SHA-256.
   */
  async authenticate(secret: string): Promise<TokenMeta> {
    if (secret.length > MAX_TOKEN_LENGTH) throw invalidToken();
    const issued = secret.startsWith(ISSUED_PREFIX);
    if (issued ? !isWellFormedIssued(secret) : !looksSealed(secret)) throw invalidToken();
    const hash = hashSecret(secret);
    const now = Date.now();
    const hit = this.#cache.get(hash);
    let meta: TokenMeta;
    if (hit && hit.until > now) {
      meta = hit.meta;
      // A disabled issuer key stops its tokens at once, cached or not.
      if (meta.sealed && !this.#sealingKeyActive(meta.sealed.kid)) throw invalidToken();
    } else {
      meta = issued ? await this.#loadIssued(hash) : await openSealedToken(secret, this.sealed);
      if (this.#cache.size >= MAX_CACHE_ENTRIES) this.#cache.clear();
      this.#cache.set(hash, { meta, until: now + this.cacheMs });
    }
    if (meta.expiresAtMs <= now) throw invalidToken();
    return meta;
  }

  async #loadIssued(hash: string): Promise<TokenMeta> {
    const row = await guard(findTokenBySecretHash(this.db, hash));
    if (!row || row.revokedAt) throw invalidToken();
    return tokenMetaFromRow(row, this.box);
  }

  #sealingKeyActive(kid: string): boolean {
    return this.sealed.keyring.get(kid) !== undefined || (this.sealed.relayKey !== undefined && this.sealed.relayKey.kid === kid);
  }

  /** Counts one call before it is forwarded; refuses when the token may not make it. */
  async use(meta: TokenMeta): Promise<UseOutcome> {
    const result = await guard(meta.sealed ? useSealedCall(this.db, meta.sealed.firstRow) : useCall(this.db, meta.id));
    if (result) return { callsLeft: result.maxCalls === null ? null : Math.max(0, result.maxCalls - result.used) };
    // The statement refused: tell exhaustion (429) from revocation or expiry (401).
    const row = await guard(findTokenById(this.db, meta.id));
    if (row && !row.revokedAt && row.expiresAt.getTime() > Date.now() && row.maxCalls !== null && row.used >= row.maxCalls) {
      throw new RelayError("calls_exhausted", "this token has used all of its calls");
    }
    this.forget(meta.id);
    throw invalidToken();
  }

  /** Gives back a call that never reached the provider (DESIGN 3.3). */
  async refund(meta: TokenMeta): Promise<UseOutcome> {
    const result = await guard(refundCall(this.db, meta.id));
    if (!result) return { callsLeft: null };
    return { callsLeft: result.maxCalls === null ? null : Math.max(0, result.maxCalls - result.used) };
  }

  /** Drops a token from the local cache (after revocation on this instance). */
  forget(id: string): void {
    for (const [hash, entry] of this.#cache) if (entry.meta.id === id) this.#cache.delete(hash);
  }
}

/**
 * Fails closed when the database cannot answer: a 503, never an uncounted call and never a
 * 500 that looks like the client's fault (DESIGN 3.3, issue 5).
 */
async function guard<T>(query: Promise<T>): Promise<T> {
  try {
    return await query;
  } catch (e) {
    throw new RelayError("unavailable", "database unavailable", { cause: e });
  }
}
