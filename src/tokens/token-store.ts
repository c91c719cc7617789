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
import { looksSigned } from "../logins/id-token.js";
import { BudgetReservations } from "./budget-reservations.js";
import { CallLeases, capOf, type LeaseOptions, type Taken } from "./call-leases.js";
import { type CallCharges, ChargeDesk, type CallCost } from "./call-charges.js";
import type { PlanQuotas } from "../plans/plan-quotas.js";
import type { Plan } from "../plans/plan-store.js";
import { quotaReport, type QuotaReport } from "../plans/quota-report.js";
import { QuotaClock } from "../plans/quota-windows.js";
import type { Prices } from "../pricing/types.js";
import { hashSecret, ISSUED_PREFIX, ISSUED_TOKEN_LENGTH, isWellFormedIssued } from "./issued-token.js";
import { looksSealed, openSealedToken, type SealedDeps } from "./sealed-token.js";
import { tokenMetaFromRow, type TokenMeta } from "./token-meta.js";
import { noLimits } from "./token-limits.js";
import { MAX_TTL_MS } from "./validate-limits.js";

export type { TokenFilter } from "../db/queries/tokens.js";

/** Longest token string the relay will look at (a sealed JWE with all claims fits easily). */
export const MAX_TOKEN_LENGTH = 4096;
const MAX_CACHE_ENTRIES = 50_000;

interface CacheEntry {
  meta: TokenMeta;
  until: number;
}

/** A counted call: the calls left after it (null: no cap), and the plan windows it was taken from. */
export type UseOutcome = Taken;

export interface TokenStoreOptions extends LeaseOptions {
  cacheMs: number;
  revocationPollMs: number;
  /** The database's own prepared statements, where it has them (Database.prepare). */
  prepare?: Prepare | undefined;
  /** Plan quotas (issue 24); without them a token's plan is not enforced. */
  plans?: PlanQuotas | undefined;
  /** Prices, for dollar budgets and plans (src/pricing). */
  prices?: Prices | undefined;
  /** Admit calls to unpriced models under dollar limits, charged $0 (config allowUnpricedModels). */
  allowUnpriced?: boolean;
}

/**
 * Turns an app's OIDC ID token into the relay token it stands for (src/logins/login-store.ts):
 * it verifies, caches and checks its login is enabled itself, on every call.
 */
export interface LoginAuthenticator {
  authenticate(idToken: string): Promise<TokenMeta>;
}

/** Public ids of sealed tokens: `<issuer or byok scope>:<jti>`. */
const SEALED_ID = /^[a-z0-9][a-z0-9._-]{0,63}:[A-Za-z0-9._~:-]{1,128}$/;
/** Token ids in a page token (issued `tok_…` and sealed ids). */
const TOKEN_ID = /^[A-Za-z0-9._~:-]{1,200}$/;

/** How far back each poll looks for revocations (covers clock skew between instances and DB). */
const REVOCATION_LOOKBACK_MS = 5000;
/** The model pin that matches no model (no model name holds NUL). */
const NO_MODEL = "\0";

export class TokenStore {
  readonly #cache = new Map<string, CacheEntry>();
  /** The cache's keys (an issued secret, a sealed one's hash) by token id (a sealed token may arrive under several secrets), for forget(). */
  readonly #hashesById = new Map<string, Set<string>>();
  readonly #counter: CallCounter;
  readonly #charges: ChargeDesk;
  /** Tokens narrowed by their plan's models, by the token's cached meta (and the plan they were narrowed by). */
  readonly #planned = new WeakMap<TokenMeta, { plan: Plan; meta: TokenMeta }>();
  readonly #leases: CallLeases;
  readonly #forgetListeners = new Set<(id: string) => void>();
  #poll: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
    private readonly opts: TokenStoreOptions,
    private readonly sealed: SealedDeps,
    /** Set when the relay accepts ID tokens of trusted logins (issue 24.4). */
    private readonly logins?: LoginAuthenticator,
  ) {
    this.#counter = new CallCounter(db, opts.prepare);
    const plans = opts.plans;
    this.#leases = new CallLeases(
      this.#counter,
      opts,
      plans && {
        of: (meta) => plans.callQuota(meta),
        refused: (quota, i) => plans.spent(quota.windows[i]!, "calls", quota.windows[i]!.limit),
        stamp: (meta) => plans.stamp(meta),
        now: plans.clock.now,
      },
    );
    const counter = this.#counter;
    this.#charges = new ChargeDesk({
      db,
      budgets: new BudgetReservations({
        reserve: (id, n, budget) => counter.reserveTokens(id, n, budget),
        adjust: (id, delta) => counter.settleTokens(id, delta),
      }),
      usdBudgets: new BudgetReservations({
        reserve: (id, n, budget) => counter.reserveUsd(id, n, budget),
        adjust: (id, delta) => counter.settleUsd(id, delta),
      }),
      quotas: plans,
      prices: opts.prices,
      allowUnpriced: opts.allowUnpriced ?? false,
      onError: () => {},
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
   *
   * A live issued token in the cache is answered at once, not as a promise: a relayed call
   * creates a promise only where it waits (issue 22). Anything else, refusals included, is a
   * promise.
   */
  authenticate(secret: string): TokenMeta | Promise<TokenMeta> {
    if (secret.length === ISSUED_TOKEN_LENGTH && secret.startsWith(ISSUED_PREFIX)) {
      const hit = this.#cache.get(secret);
      if (hit !== undefined) {
        const now = Date.now();
        if (hit.until > now && hit.meta.expiresAtMs > now) return hit.meta;
      }
    }
    return this.#authenticate(secret);
  }

  async #authenticate(secret: string): Promise<TokenMeta> {
    if (secret.length > MAX_TOKEN_LENGTH) throw invalidToken();
    const issued = secret.startsWith(ISSUED_PREFIX);
    const now = Date.now();
    // Only a well-formed issued secret is ever stored under itself: a hit proves the shape.
    let key = secret;
    let hit = issued && secret.length === ISSUED_TOKEN_LENGTH ? this.#cache.get(secret) : undefined;
    // A compact JWS (three segments; a sealed token is a five-segment JWE) is an app's ID token.
    // Not cached here: the login store checks on every call that its login is still enabled.
    if (hit === undefined && !issued && this.logins !== undefined && looksSigned(secret)) {
      const login = await this.logins.authenticate(secret);
      if (login.expiresAtMs <= now) throw invalidToken();
      return login;
    }
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

  /** The plan a token names, as loaded now; undefined without one; a 412 when it no longer exists. */
  planOf(meta: TokenMeta): Plan | undefined {
    return this.opts.plans?.planOf(meta);
  }

  /**
   * The token as its plan narrows it: a plan's model list and the token's own pin both apply,
   * so the models allowed are those in both (none in common: every model is refused). The
   * token itself when its plan lists no models.
   */
  withPlan(meta: TokenMeta): TokenMeta {
    if (meta.plan === undefined || this.opts.plans === undefined) return meta;
    const plan = this.opts.plans.planOf(meta);
    if (plan === undefined || plan.models.size === 0) return meta;
    const seen = this.#planned.get(meta);
    if (seen !== undefined && seen.plan === plan) return seen.meta;
    const both = meta.models.size === 0 ? new Set(plan.models) : new Set([...meta.models].filter((m) => plan.models.has(m)));
    // No model names NUL (token-limits.ts): a pin nothing matches, where an empty set would allow all.
    if (both.size === 0) both.add(NO_MODEL);
    const narrowed: TokenMeta = { ...meta, models: both };
    this.#planned.set(meta, { plan, meta: narrowed });
    return narrowed;
  }

  /** Whether a budget (the token's or its plan's, in LLM tokens or dollars) applies to the token's calls. */
  charged(meta: TokenMeta): boolean {
    return this.#charges.applies(meta);
  }

  /**
   * Admits a counted call against every budget of its token and plan: reserves the call's
   * maximum in the database, where every instance's reservations meet (src/tokens/call-charges.ts,
   * src/tokens/budget-reservations.ts). Undefined when no budget applies. When one is spent the
   * call is given back (no byte of it left) and refused (429 budget_exhausted or quota_exhausted).
   */
  async admitCharges(meta: TokenMeta, used: UseOutcome, cost: CallCost): Promise<CallCharges | undefined> {
    try {
      return await guard(this.#charges.admit(meta, cost));
    } catch (e) {
      await this.refund(meta, used).catch(() => {});
      throw e;
    }
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
    // The credential itself ended while its call waited for its count (CallLeases.take): refused,
    // and nothing forgotten, since its row may live on (a login's ID token ends long before it).
    if (meta.expiresAtMs <= Date.now()) throw invalidToken();
    // The statement refused: tell exhaustion (429) from revocation or expiry (401).
    const row = await guard(findTokenById(this.db, meta.id));
    const cap = capOf(row?.maxCalls ?? null, meta);
    if (row && !row.revokedAt && row.expiresAt.getTime() > Date.now() && cap !== null && row.used >= cap) {
      throw new RelayError("calls_exhausted", "this token has used all of its calls");
    }
    this.forget(meta.id);
    throw invalidToken();
  }

  /** Gives back a call that never reached the provider (DESIGN 3.3), to the plan windows it was taken from too. */
  async refund(meta: TokenMeta, used?: UseOutcome): Promise<void> {
    await guard(this.#leases.giveBack(meta, used));
  }

  /**
   * The token as its holder sees it (IntrospectToken): from memory, its row read at most once a
   * second, calls left exact on this instance (src/tokens/token-views.ts). Undefined: no row.
   */
  introspect(id: string): Promise<TokenRow | undefined> {
    return guard(this.#leases.view(id, (key) => findTokenById(this.db, key)));
  }

  /**
   * What the token's holder has left: its own limits and its plan's windows for its subject
   * (src/plans/quota-report.ts). Undefined when the token has no row (revoked meanwhile).
   */
  async quota(meta: TokenMeta): Promise<QuotaReport | undefined> {
    const row = (await this.introspect(meta.id)) ?? (meta.sealed ? sealedRowBeforeUse(meta) : undefined);
    if (row === undefined || row.revokedAt) return undefined;
    const quotas = this.opts.plans;
    const plan = meta.plan === undefined ? undefined : quotas?.planOf(meta);
    const clock = quotas?.clock ?? new QuotaClock();
    return guard(quotaReport(this.db, row, plan, clock, (subject, key) => this.#leases.unusedInWindow(subject, key)));
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
    // A refusal decided on purpose (a spent plan window, an unknown plan) is not an outage.
    if (e instanceof RelayError) throw e;
    throw new RelayError("unavailable", "database unavailable", { cause: e });
  }
}

/** A sealed token's row before its first use inserted it: nothing used yet. */
function sealedRowBeforeUse(meta: TokenMeta): TokenRow {
  const first = meta.sealed!.firstRow;
  return {
    secretHash: null,
    upstreamKeyEnc: null,
    upstreamKeyHint: "",
    pool: null,
    plan: null,
    subject: "",
    used: 0,
    tokensUsed: 0,
    microUsdUsed: 0,
    createdAt: new Date(),
    revokedAt: null,
    lastUsedAt: null,
    ...noLimits(),
    ...first,
  } as TokenRow;
}
