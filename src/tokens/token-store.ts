/**
 * The one check path for relay tokens: authenticate a secret, count a call atomically, refund a
 * call that never reached the provider.
 *
 * A token's metadata (provider, limits, decrypted key) is cached for `cacheMs`. Calls are
 * counted through CallLeases (one atomic statement per call or per leased block; never past the
 * cap). Expiry is checked on every call. Revocation is immediate on the instance that revokes,
 * and reaches the others within `revocationPollMs` (0: one instance, no poll): they drop the
 * token's cache entry and lease.
 */
import type { Db } from "../db/client.js";
import type { Prepare } from "../db/prepared.js";
import { CallCounter } from "../db/queries/call-counter.js";
import { findTokenBySecretHash, findTokenById } from "../db/queries/tokens.js";
import { invalidToken, RelayError } from "../errors.js";
import type { SecretBox } from "../keys/secret-box.js";
import { MAX_TOKENS_PER_FIELD } from "../providers/shapes/usage-meter.js";
import { CallLeases, type LeaseOptions } from "./call-leases.js";
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

export interface TokenStoreOptions extends LeaseOptions {
  cacheMs: number;
  revocationPollMs: number;
  /** The database's own prepared statements, where it has them (Database.prepare). */
  prepare?: Prepare | undefined;
}

/** How far back each poll looks for revocations (covers clock skew between instances and DB). */
const REVOCATION_LOOKBACK_MS = 5000;

export class TokenStore {
  readonly #cache = new Map<string, CacheEntry>();
  /** The cache's keys by token id (a sealed token may arrive under several secrets), for forget(). */
  readonly #hashesById = new Map<string, Set<string>>();
  /** LLM tokens spent per token id, for budgets (only tokens that have one). */
  readonly #spent = new Map<string, number>();
  readonly #counter: CallCounter;
  readonly #leases: CallLeases;
  #poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
    private readonly opts: TokenStoreOptions,
    private readonly sealed: SealedDeps,
  ) {
    this.#counter = new CallCounter(db, opts.prepare);
    this.#leases = new CallLeases(this.#counter, opts);
  }

  start(): void {
    this.#leases.start();
    if (this.opts.revocationPollMs <= 0) return;
    this.#poll = setInterval(() => void this.#dropRevoked().catch(() => {}), this.opts.revocationPollMs);
    this.#poll.unref();
  }

  /** Gives back every leased, unused call; after the server stopped taking requests. */
  async close(): Promise<void> {
    clearInterval(this.#poll);
    await this.#leases.close().catch(() => {});
  }

  async #dropRevoked(): Promise<void> {
    const rows = await this.#counter.revokedSince(new Date(Date.now() - REVOCATION_LOOKBACK_MS));
    for (const row of rows) this.forget(row.id);
  }

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
      if (meta.budgetTokens !== null) await this.#loadSpent(meta);
      if (this.#cache.size >= MAX_CACHE_ENTRIES) {
        this.#cache.clear();
        this.#hashesById.clear();
      }
      this.#cache.set(hash, { meta, until: now + this.opts.cacheMs });
      let hashes = this.#hashesById.get(meta.id);
      if (hashes === undefined) this.#hashesById.set(meta.id, (hashes = new Set()));
      hashes.add(hash);
    }
    if (meta.expiresAtMs <= now) throw invalidToken();
    return meta;
  }

  /**
   * Budgets (LLM tokens) are metered from usage, so they are soft: the database's count (written
   * by the usage writer every ~250 ms) when the token was last loaded, plus what this instance
   * metered since. Other instances' spending arrives with the next load (`cacheMs`).
   */
  checkBudget(meta: TokenMeta): void {
    if (meta.budgetTokens === null) return;
    const spent = this.#spent.get(meta.id);
    if (spent !== undefined && spent >= meta.budgetTokens) {
      throw new RelayError("budget_exhausted", "this token has used all of its LLM token budget");
    }
  }

  /**
   * Meters a finished call's LLM tokens against the token's budget. The meters already clamp
   * what providers report (src/providers/shapes/usage-meter.ts); this holds whatever the source:
   * never NaN, never more than one call's sane maximum (issue 18, finding 3).
   */
  addUsage(meta: TokenMeta, totalTokens: number): void {
    if (meta.budgetTokens === null || !(totalTokens > 0)) return;
    const charged = Math.min(Math.round(totalTokens), MAX_TOKENS_PER_FIELD);
    this.#spent.set(meta.id, Math.min((this.#spent.get(meta.id) ?? 0) + charged, Number.MAX_SAFE_INTEGER));
  }

  async #loadSpent(meta: TokenMeta): Promise<void> {
    const row = await guard(findTokenById(this.db, meta.id));
    this.#spent.set(meta.id, Math.max(row?.tokensUsed ?? 0, this.#spent.get(meta.id) ?? 0));
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
    const taken = await guard(this.#leases.take(meta));
    if (taken) return taken;
    // The statement refused: tell exhaustion (429) from revocation or expiry (401).
    const row = await guard(findTokenById(this.db, meta.id));
    if (row && !row.revokedAt && row.expiresAt.getTime() > Date.now() && row.maxCalls !== null && row.used >= row.maxCalls) {
      throw new RelayError("calls_exhausted", "this token has used all of its calls");
    }
    this.forget(meta.id);
    throw invalidToken();
  }

  /** Gives back a call that never reached the provider (DESIGN 3.3). */
  async refund(meta: TokenMeta): Promise<void> {
    await guard(this.#leases.giveBack(meta));
  }

  /** Drops a token's cache entry and lease (after a revocation). */
  forget(id: string): void {
    this.#leases.drop(id);
    // By id, not by a walk of the cache: the revocation poll forgets every token revoked in
    // the last seconds, twice a second, and the cache holds up to MAX_CACHE_ENTRIES.
    for (const hash of this.#hashesById.get(id) ?? []) this.#cache.delete(hash);
    this.#hashesById.delete(id);
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
