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
import { findTokenBySecretHash, findTokenById, insertRevokedSealed, listTokens, revokeToken, type TokenFilter } from "../db/queries/tokens.js";
import type { TokenRow } from "../db/schema/index.js";
import { decodePageToken, integerField, pageOf, pageSizeOf, textField, type Page } from "../db/page-cursor.js";
import { invalidToken, RelayError } from "../errors.js";
import type { SecretBox } from "../keys/secret-box.js";
import { BudgetReservations, type Reservation } from "./budget-reservations.js";
import { CallLeases, type LeaseOptions } from "./call-leases.js";
import { hashSecret, ISSUED_PREFIX, ISSUED_TOKEN_LENGTH, isWellFormedIssued } from "./issued-token.js";
import { looksSealed, openSealedToken, type SealedDeps } from "./sealed-token.js";
import { tokenMetaFromRow, type TokenMeta } from "./token-meta.js";
import { MAX_TTL_MS } from "./validate-limits.js";

export type { TokenFilter } from "../db/queries/tokens.js";

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

/** Public ids of sealed tokens: `<issuer or byok scope>:<jti>`. */
const SEALED_ID = /^[a-z0-9][a-z0-9._-]{0,63}:[A-Za-z0-9._~:-]{1,128}$/;
/** Token ids in a page token (issued `tok_…` and sealed ids). */
const TOKEN_ID = /^[A-Za-z0-9._~:-]{1,200}$/;

/** How far back each poll looks for revocations (covers clock skew between instances and DB). */
const REVOCATION_LOOKBACK_MS = 5000;

export class TokenStore {
  readonly #cache = new Map<string, CacheEntry>();
  /** The cache's keys (an issued secret, a sealed one's hash) by token id (a sealed token may arrive under several secrets), for forget(). */
  readonly #hashesById = new Map<string, Set<string>>();
  readonly #counter: CallCounter;
  readonly #budgets: BudgetReservations;
  readonly #leases: CallLeases;
  readonly #forgetListeners = new Set<(id: string) => void>();
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
   * as the same TokenMeta, cached for `cacheMs`: an issued secret (42 characters) under itself,
   * so a hit costs neither its checksum nor a SHA-256 (issue 22: ~2% of a relayed call); a
   * sealed one (up to 4 KB) under its SHA-256, so the cache's memory stays bounded.
   */
  async authenticate(secret: string): Promise<TokenMeta> {
    if (secret.length > MAX_TOKEN_LENGTH) throw invalidToken();
    const issued = secret.startsWith(ISSUED_PREFIX);
    const now = Date.now();
    // Only a well-formed issued secret is ever stored under itself: a hit proves the shape.
    let key = secret;
    let hit = issued && secret.length === ISSUED_TOKEN_LENGTH ? this.#cache.get(secret) : undefined;
    if (hit === undefined) {
      if (issued ? !isWellFormedIssued(secret) : !looksSealed(secret)) throw invalidToken();
      if (!issued) {
        key = hashSecret(secret);
        hit = this.#cache.get(key);
      }
    }
    let meta: TokenMeta;
    if (hit && hit.until > now) {
      meta = hit.meta;
      // A disabled issuer key stops its tokens at once, cached or not.
      if (meta.sealed && !this.#sealingKeyActive(meta.sealed.kid)) throw invalidToken();
    } else {
      meta = issued ? await this.#loadIssued(hashSecret(secret)) : await openSealedToken(secret, this.sealed);
      if (this.#cache.size >= MAX_CACHE_ENTRIES) {
        this.#cache.clear();
        this.#hashesById.clear();
      }
      this.#cache.set(key, { meta, until: now + this.opts.cacheMs });
      let keys = this.#hashesById.get(meta.id);
      if (keys === undefined) this.#hashesById.set(meta.id, (keys = new Set()));
      keys.add(key);
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

  /**
   * Counts one call before it is forwarded; refuses when the token may not make it. A call from
   * a lease this instance holds is counted at once, without a promise (issue 22).
   */
  use(meta: TokenMeta): UseOutcome | Promise<UseOutcome> {
    const taken = this.#leases.take(meta);
    return taken instanceof Promise ? this.#useGranted(meta, taken) : taken;
  }

  async #useGranted(meta: TokenMeta, granting: Promise<UseOutcome | undefined>): Promise<UseOutcome> {
    const taken = await guard(granting);
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

  /**
   * The token as its holder sees it (IntrospectToken): from memory, its row read at most once a
   * second, calls left exact on this instance (src/tokens/token-views.ts). Undefined: no row.
   */
  introspect(id: string): Promise<TokenRow | undefined> {
    return guard(this.#leases.view(id, (key) => findTokenById(this.db, key)));
  }

  /** Tokens with a lease on this instance and their unused leased calls (for metrics). */
  leaseStats(): { tokens: number; calls: number } {
    return this.#leases.stats();
  }

  /**
   * Calls `listener` with the id of every token forgotten from now on (revoked here or on another
   * instance, found revoked or expired): open WebSocket sessions of it close (issue 25).
   */
  onForget(listener: (id: string) => void): () => void {
    this.#forgetListeners.add(listener);
    return () => this.#forgetListeners.delete(listener);
  }

  /**
   * Revokes a token by id, at once on this instance (its cache entry and lease are dropped) and
   * within `revocationPollMs` on the others. A sealed token (`<issuer>:<jti>`) can be revoked
   * before its first use: its row is inserted already revoked. `sealedExpiresAt` is given for a
   * token known to be sealed (its claims were read) and ends the row's life with the token's;
   * an id alone, shaped like a sealed id, gets a row outliving any token the issuer could mint.
   * Undefined when no such token exists.
   */
  async revoke(id: string, sealedExpiresAt?: Date): Promise<TokenRow | undefined> {
    const sealed = sealedExpiresAt !== undefined || SEALED_ID.test(id);
    const row =
      (await revokeToken(this.db, id)) ?? (sealed ? await insertRevokedSealed(this.db, id, sealedExpiresAt ?? new Date(Date.now() + MAX_TTL_MS)) : undefined);
    this.forget(id);
    return row;
  }

  /** A token's row as stored (admin reads). */
  find(id: string): Promise<TokenRow | undefined> {
    return findTokenById(this.db, id);
  }

  /** One page of tokens, newest first (src/db/page-cursor.ts). */
  async list(filter: TokenFilter, pageSize: number, pageToken: string): Promise<Page<TokenRow>> {
    const size = pageSizeOf(pageSize);
    let after: { createdAt: Date; id: string } | undefined;
    if (pageToken !== "") {
      const [ms, id] = decodePageToken(pageToken, 2) as [string, string];
      after = { createdAt: new Date(integerField(ms)), id: textField(id, TOKEN_ID) };
    }
    const rows = await listTokens(this.db, filter, size + 1, after);
    return pageOf(rows, size, (last) => [last.createdAt.getTime(), last.id]);
  }

  /** Drops a token's cache entry and lease (after a revocation). */
  forget(id: string): void {
    for (const listener of this.#forgetListeners) listener(id);
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
