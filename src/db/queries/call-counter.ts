/**
 * The counting statements of the hot path, prepared once per database (drizzle builds SQL per
 * call otherwise, ~10% of the relay's CPU in profiles). Each is one atomic statement: a call or
 * a block of calls is taken only while the token is unrevoked, unexpired and the whole block
 * fits under its cap, so no number of callers or instances can pass `max_calls` (DESIGN 3.3).
 * LLM-token budgets are reserved and settled here the same way (issue 18, finding 2).
 */
import { and, eq, gt, gte, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { tokens, type NewTokenRow } from "../schema/index.js";
import type { Prepare, PreparedRun } from "../prepared.js";
import type { UseResult } from "./tokens.js";
import type { CallQuota } from "../../plans/plan-quotas.js";
import { refundWithQuota, useWithQuota, type QuotaUse } from "./quota-counter.js";

/** The largest bigint: a counter saturates there rather than failing (SQLSTATE 22003). */
const BIGINT_MAX = "9223372036854775807";

export class CallCounter {
  readonly #use;
  readonly #refund;
  readonly #revokedSince;
  readonly #reserveTokens;
  readonly #settleTokens;
  readonly #reserveUsd;
  readonly #settleUsd;
  /** The same two statements prepared in the database itself, where that pays (PGlite). */
  readonly #usePrepared: PreparedRun | undefined;
  readonly #refundPrepared: PreparedRun | undefined;

  constructor(
    private readonly db: Db,
    prepare?: Prepare,
  ) {
    const n = sql.placeholder("n");
    const use = db
      .update(tokens)
      .set({ used: sql`${tokens.used} + ${n}`, lastUsedAt: sql`now()` })
      .where(
        and(
          eq(tokens.id, sql.placeholder("id")),
          isNull(tokens.revokedAt),
          gt(tokens.expiresAt, sql`now()`),
          or(isNull(tokens.maxCalls), lte(sql`${tokens.used} + ${n}`, tokens.maxCalls)),
        ),
      )
      .returning({ used: tokens.used, maxCalls: tokens.maxCalls });
    const refund = db
      .update(tokens)
      .set({ used: sql`greatest(0, ${tokens.used} - ${n})` })
      .where(and(eq(tokens.id, sql.placeholder("id")), gt(tokens.used, 0)))
      .returning({ used: tokens.used, maxCalls: tokens.maxCalls });
    this.#use = use.prepare("relay_use_calls");
    this.#refund = refund.prepare("relay_refund_calls");
    this.#usePrepared = prepare?.("relay_use_calls", use.toSQL());
    this.#refundPrepared = prepare?.("relay_refund_calls", refund.toSQL());
    this.#revokedSince = db
      .select({ id: tokens.id, revokedAt: tokens.revokedAt })
      .from(tokens)
      .where(gte(tokens.revokedAt, sql.placeholder("since")))
      .prepare("relay_revoked_since");
    // Budgets (src/tokens/budget-reservations.ts): `tokens_used` is the settled usage plus the
    // reservations of calls in flight, so one conditional statement admits a call on every
    // instance at once. Numeric arithmetic saturates instead of failing at the bigint limit.
    this.#reserveTokens = db
      .update(tokens)
      .set({ tokensUsed: sql`least(${tokens.tokensUsed}::numeric + ${sql.placeholder("n")}, ${BIGINT_MAX}::numeric)::bigint` })
      .where(and(eq(tokens.id, sql.placeholder("id")), lt(tokens.tokensUsed, sql.placeholder("budget"))))
      .returning({ tokensUsed: tokens.tokensUsed })
      .prepare("relay_reserve_tokens");
    this.#settleTokens = db
      .update(tokens)
      .set({ tokensUsed: sql`greatest(0, least(${tokens.tokensUsed}::numeric + ${sql.placeholder("delta")}, ${BIGINT_MAX}::numeric))::bigint` })
      .where(eq(tokens.id, sql.placeholder("id")))
      .returning({ tokensUsed: tokens.tokensUsed })
      .prepare("relay_settle_tokens");
    // Dollar budgets (issue 24): the same two statements on `micro_usd_used`.
    this.#reserveUsd = db
      .update(tokens)
      .set({ microUsdUsed: sql`least(${tokens.microUsdUsed}::numeric + ${sql.placeholder("n")}, ${BIGINT_MAX}::numeric)::bigint` })
      .where(and(eq(tokens.id, sql.placeholder("id")), lt(tokens.microUsdUsed, sql.placeholder("budget"))))
      .returning({ microUsdUsed: tokens.microUsdUsed })
      .prepare("relay_reserve_usd");
    this.#settleUsd = db
      .update(tokens)
      .set({ microUsdUsed: sql`greatest(0, least(${tokens.microUsdUsed}::numeric + ${sql.placeholder("delta")}, ${BIGINT_MAX}::numeric))::bigint` })
      .where(eq(tokens.id, sql.placeholder("id")))
      .returning({ microUsdUsed: tokens.microUsdUsed })
      .prepare("relay_settle_usd");
  }

  /** Adds `n` micro-dollars to a token's `micro_usd_used` if it is below `budget`; the new count, or undefined when refused. */
  async reserveUsd(id: string, n: number, budget: number): Promise<number | undefined> {
    const [row] = await this.#reserveUsd.execute({ id, n, budget });
    return row?.microUsdUsed;
  }

  /** Adds `delta` micro-dollars (negative: a reservation given back) to `micro_usd_used`, never below 0. */
  async settleUsd(id: string, delta: number): Promise<void> {
    await this.#settleUsd.execute({ id, delta });
  }

  /**
   * Adds `n` LLM tokens to a token's `tokens_used` if it is still below `budget` (used +
   * reserved < budget); the new count, or undefined when refused (or the row is gone).
   */
  async reserveTokens(id: string, n: number, budget: number): Promise<number | undefined> {
    const [row] = await this.#reserveTokens.execute({ id, n, budget });
    return row?.tokensUsed;
  }

  /** Adds `delta` (negative: a reservation given back) to `tokens_used`, never below 0. */
  async settleTokens(id: string, delta: number): Promise<void> {
    await this.#settleTokens.execute({ id, delta });
  }

  /** Takes `n` calls at once (all or none); undefined when they may not be taken. */
  async use(id: string, n: number): Promise<UseResult | undefined> {
    if (this.#usePrepared) return useResult(await this.#usePrepared({ id, n }));
    const [row] = await this.#use.execute({ id, n });
    return row;
  }

  /**
   * Takes `n` calls of a sealed token: its first use anywhere inserts the row (by issuer and
   * jti), later ones increment it, in one statement. The row keeps the cap of the token that
   * inserted it; the token presented now is held to its own cap too (`first.maxCalls`, its
   * claim), so a jti first used by a token with a larger cap never lets this one pass its own.
   */
  async useSealed(first: NewTokenRow, n: number): Promise<UseResult | undefined> {
    const own = first.maxCalls ?? null;
    if (own !== null && n > own) return undefined;
    const [row] = await this.db
      .insert(tokens)
      .values({ ...first, used: n, lastUsedAt: sql`now()` })
      .onConflictDoUpdate({
        target: tokens.id,
        set: { used: sql`${tokens.used} + ${n}`, lastUsedAt: sql`now()` },
        setWhere: and(
          isNull(tokens.revokedAt),
          gt(tokens.expiresAt, sql`now()`),
          or(isNull(tokens.maxCalls), lte(sql`${tokens.used} + ${n}`, tokens.maxCalls)),
          own === null ? undefined : lte(sql`${tokens.used} + ${n}`, own),
        ),
      })
      .returning({ used: tokens.used, maxCalls: tokens.maxCalls });
    return row;
  }

  /**
   * Takes `n` calls from a plan token and from its subject's windows, all or none, in one
   * transaction (src/db/queries/quota-counter.ts).
   */
  useWithQuota(meta: { id: string; sealed?: { firstRow: NewTokenRow } | undefined }, quota: CallQuota, n: number): Promise<QuotaUse> {
    return useWithQuota(this.db, { id: meta.id, first: meta.sealed?.firstRow }, quota.subject, quota.windows, n);
  }

  /** Gives back `n` unused calls of a plan token to it and to the windows they were taken from. */
  refundWithQuota(id: string, quota: CallQuota, n: number): Promise<UseResult | undefined> {
    return refundWithQuota(
      this.db,
      id,
      quota.subject,
      quota.windows.map((w) => w.key),
      n,
    );
  }

  /** Gives back `n` calls that were never used (refunds, unused leases). */
  async refund(id: string, n: number): Promise<UseResult | undefined> {
    if (this.#refundPrepared) return useResult(await this.#refundPrepared({ id, n }));
    const [row] = await this.#refund.execute({ id, n });
    return row;
  }

  /** Tokens revoked at or after `since`, so other instances drop what they cached or leased. */
  async revokedSince(since: Date): Promise<{ id: string; revokedAt: Date | null }[]> {
    // As text: postgres.js cannot serialise a Date bound to this untyped placeholder (every poll
    // failed on PostgreSQL, so revocations reached other instances only through a refused count).
    return this.#revokedSince.execute({ since: since.toISOString() });
  }
}

/** `returning used, max_calls` as an array row. */
function useResult(rows: unknown[][]): UseResult | undefined {
  const row = rows[0];
  if (!row) return undefined;
  return { used: Number(row[0]), maxCalls: row[1] === null ? null : Number(row[1]) };
}
