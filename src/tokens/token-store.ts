/**
 * The one check path for relay tokens: authenticate a secret, count a call atomically, reserve
 * its LLM-token budget, refund a call that never reached the provider.
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
import { BudgetReservations, type Reservation } from "./budget-reservations.js";
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
  readonly #counter: CallCounter;
  readonly #budgets: BudgetReservations;
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
    const counter = this.#counter;
    this.#budgets = new BudgetReservations({
      reserve: (id, n, budget) => counter.reserveTokens(id, n, budget),
      adjust: (id, delta) => counter.settleTokens(id, delta),
    });
  }

  start(): void {
    this.#leases.start();
    if (this.opts.revocationPollMs <= 0) return;
    // One poll at a time: behind a stalled or locked database, overlapping polls would take every
    // pooled connection and starve the requests (issue 19).
    let polling = false;
    this.#poll = setInterval(() => {
      if (polling) return;
      polling = true;
      void this.#dropRevoked()
        .catch(() => {})
        .finally(() => (polling = false));
    }, this.opts.revocationPollMs);
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
   * Admits a counted call against its token's LLM-token budget: reserves the call's maximum
   * in the database, where every instance's reservations meet (src/tokens/budget-reservations.ts
   * has the rule). Undefined for a token without a budget. When the budget is spent the call
   * is given back (no byte of it left) and refused with 429 budget_exhausted.
   */
  async reserveBudget(meta: TokenMeta, maximum: number): Promise<Reservation | undefined> {
    if (meta.budgetTokens === null) return undefined;
    let held: Reservation | undefined;
    try {
      held = await guard(this.#budgets.reserve(meta.id, maximum, meta.budgetTokens));
    } catch (e) {
      await this.refund(meta).catch(() => {});
      throw e;
    }
    if (held) return held;
    await this.refund(meta).catch(() => {});
    throw new RelayError("budget_exhausted", "this token has used all of its LLM token budget");
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

  /** Tokens with a lease on this instance and their unused leased calls (for metrics). */
  leaseStats(): { tokens: number; calls: number } {
    return this.#leases.stats();
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
