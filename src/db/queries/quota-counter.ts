/**
 * The statements of plan quotas (issue 24), on `quota_counters` (one row per subject and
 * calendar window) together with the token's own row.
 *
 * Calls are exact: a block of calls is taken from the token and from every window of the
 * subject's plan that limits calls in ONE transaction, each row by one conditional statement
 * (taken only if the block fits under that row's limit); the first that does not fit rolls the
 * whole block back. Rows are locked in one order everywhere (the token's row, then the
 * windows by key), so concurrent blocks of one subject's tokens never deadlock.
 *
 * LLM tokens and micro-dollars are metered with reserve-then-settle (src/tokens/budget-reservations.ts
 * has the rule): a call is admitted while every window's charge is below its limit, charged its
 * maximum on every window in one transaction, and settled to its real cost when it ends.
 */
import { and, eq, gt, inArray, isNull, lt, lte, or, sql, type SQL, type SQLWrapper } from "drizzle-orm";
import type { Db } from "../client.js";
import { quotaCounters, tokens, type NewTokenRow } from "../schema/index.js";
import type { UseResult } from "./tokens.js";

/** One window a block of calls is taken from: its key, its end (for pruning) and its call limit. */
export interface WindowTake {
  key: string;
  endsAt: number;
  limit: number;
}

/** A window's charge limits; null: that unit is not limited there (still counted). */
export interface WindowCharge {
  key: string;
  endsAt: number;
  tokenLimit: number | null;
  usdLimit: number | null;
}

export type QuotaUse =
  | { ok: true; token: UseResult; calls: number[] }
  /** The token refused the block (revoked, expired, capped). */
  | { ok: false; refused: "token" }
  /** The window at `index` had no room for the block. */
  | { ok: false; refused: "window"; index: number };

class Refused extends Error {
  constructor(readonly result: QuotaUse) {
    super("refused");
  }
}

const BIGINT_MAX = "9223372036854775807";

/** Takes `n` calls from the token (its row inserted on first use when `first` is given) and from each window, all or none. */
export async function useWithQuota(
  db: Db,
  token: { id: string; first?: NewTokenRow | undefined },
  subject: string,
  windows: readonly WindowTake[],
  n: number,
): Promise<QuotaUse> {
  const sorted = windows.map((w, index) => ({ w, index })).sort((a, b) => (a.w.key < b.w.key ? -1 : 1));
  for (const { w, index } of sorted) if (n > w.limit) return { ok: false, refused: "window", index };
  if (token.first?.maxCalls != null && n > token.first.maxCalls) return { ok: false, refused: "token" };
  try {
    return await db.transaction(async (tx) => {
      // A sealed token is held to its own cap as well as its row's (CallCounter.useSealed).
      const own = token.first?.maxCalls ?? null;
      const fits = and(
        or(isNull(tokens.maxCalls), lte(sql`${tokens.used} + ${n}`, tokens.maxCalls)),
        own === null ? undefined : lte(sql`${tokens.used} + ${n}`, own),
      );
      const live = and(isNull(tokens.revokedAt), gt(tokens.expiresAt, sql`now()`));
      const [row] = token.first
        ? await tx
            .insert(tokens)
            .values({ ...token.first, used: n, lastUsedAt: sql`now()` })
            .onConflictDoUpdate({ target: tokens.id, set: { used: sql`${tokens.used} + ${n}`, lastUsedAt: sql`now()` }, setWhere: and(live, fits) })
            .returning({ used: tokens.used, maxCalls: tokens.maxCalls })
        : await tx
            .update(tokens)
            .set({ used: sql`${tokens.used} + ${n}`, lastUsedAt: sql`now()` })
            .where(and(eq(tokens.id, token.id), live, fits))
            .returning({ used: tokens.used, maxCalls: tokens.maxCalls });
      if (!row) throw new Refused({ ok: false, refused: "token" });
      const calls: number[] = new Array<number>(windows.length).fill(0);
      for (const { w, index } of sorted) {
        const [counter] = await tx
          .insert(quotaCounters)
          .values({ subject, window: w.key, calls: n, endsAt: new Date(w.endsAt) })
          .onConflictDoUpdate({
            target: [quotaCounters.subject, quotaCounters.window],
            set: { calls: sql`${quotaCounters.calls} + ${n}` },
            setWhere: lte(sql`${quotaCounters.calls} + ${n}`, w.limit),
          })
          .returning({ calls: quotaCounters.calls });
        if (!counter) throw new Refused({ ok: false, refused: "window", index });
        calls[index] = Number(counter.calls);
      }
      return { ok: true as const, token: { used: Number(row.used), maxCalls: row.maxCalls === null ? null : Number(row.maxCalls) }, calls };
    });
  } catch (e) {
    if (e instanceof Refused) return e.result;
    throw e;
  }
}

/** Gives `n` unused calls back to the token and to the windows they were taken from (never below 0). */
export async function refundWithQuota(db: Db, id: string, subject: string, windowKeys: readonly string[], n: number): Promise<UseResult | undefined> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .update(tokens)
      .set({ used: sql`greatest(0, ${tokens.used} - ${n})` })
      .where(and(eq(tokens.id, id), gt(tokens.used, 0)))
      .returning({ used: tokens.used, maxCalls: tokens.maxCalls });
    // One row per statement, in key order: the order every other statement here locks them in
    // (a multi-row UPDATE locks in scan order, which could deadlock against a reservation).
    for (const key of [...windowKeys].sort()) {
      await tx
        .update(quotaCounters)
        .set({ calls: sql`greatest(0, ${quotaCounters.calls} - ${n})` })
        .where(and(eq(quotaCounters.subject, subject), eq(quotaCounters.window, key)));
    }
    return row === undefined ? undefined : { used: Number(row.used), maxCalls: row.maxCalls === null ? null : Number(row.maxCalls) };
  });
}

/**
 * Reserves `tokens` LLM tokens and `usd` micro-dollars on every window, all or none: each only
 * while its charges are below their limits. False when one window is spent (its index).
 */
export async function reserveWindows(
  db: Db,
  subject: string,
  windows: readonly WindowCharge[],
  llm: number,
  usd: number,
): Promise<{ ok: true } | { ok: false; index: number }> {
  const sorted = windows.map((w, index) => ({ w, index })).sort((a, b) => (a.w.key < b.w.key ? -1 : 1));
  try {
    return await db.transaction(async (tx) => {
      for (const { w, index } of sorted) {
        const room: SQL[] = [];
        if (w.tokenLimit !== null) room.push(lt(quotaCounters.llmTokens, w.tokenLimit));
        if (w.usdLimit !== null) room.push(lt(quotaCounters.microUsd, w.usdLimit));
        const [counter] = await tx
          .insert(quotaCounters)
          .values({ subject, window: w.key, llmTokens: llm, microUsd: usd, endsAt: new Date(w.endsAt) })
          .onConflictDoUpdate({
            target: [quotaCounters.subject, quotaCounters.window],
            set: { llmTokens: saturatingAdd(quotaCounters.llmTokens, llm), microUsd: saturatingAdd(quotaCounters.microUsd, usd) },
            ...(room.length > 0 ? { setWhere: and(...room) } : {}),
          })
          .returning({ calls: quotaCounters.calls });
        if (!counter) throw new Refused({ ok: false, refused: "window", index });
      }
      return { ok: true as const };
    });
  } catch (e) {
    if (e instanceof Refused && !e.result.ok && e.result.refused === "window") return { ok: false, index: e.result.index };
    throw e;
  }
}

/**
 * Adds deltas (negative: reservations given back) to the windows' charges, never below 0: one
 * row per statement in key order (see refundWithQuota), each its own atomic statement.
 */
export async function adjustWindows(db: Db, subject: string, windowKeys: readonly string[], llm: number, usd: number): Promise<void> {
  for (const key of [...windowKeys].sort()) {
    await db
      .update(quotaCounters)
      .set({
        llmTokens: sql`greatest(0, least(${quotaCounters.llmTokens}::numeric + ${llm}, ${BIGINT_MAX}::numeric))::bigint`,
        microUsd: sql`greatest(0, least(${quotaCounters.microUsd}::numeric + ${usd}, ${BIGINT_MAX}::numeric))::bigint`,
      })
      .where(and(eq(quotaCounters.subject, subject), eq(quotaCounters.window, key)));
  }
}

/** A subject's counters of the given windows (GetQuota). */
export async function readWindows(
  db: Db,
  subject: string,
  windowKeys: readonly string[],
): Promise<Map<string, { calls: number; llmTokens: number; microUsd: number }>> {
  if (windowKeys.length === 0) return new Map();
  const rows = await db
    .select({ window: quotaCounters.window, calls: quotaCounters.calls, llmTokens: quotaCounters.llmTokens, microUsd: quotaCounters.microUsd })
    .from(quotaCounters)
    .where(and(eq(quotaCounters.subject, subject), inArray(quotaCounters.window, [...windowKeys])));
  return new Map(rows.map((r) => [r.window, { calls: Number(r.calls), llmTokens: Number(r.llmTokens), microUsd: Number(r.microUsd) }]));
}

/** Deletes the counters of windows that ended before `before` (a few rows per active subject a day). */
export async function pruneWindows(db: Db, before: Date): Promise<number> {
  const gone = await db.delete(quotaCounters).where(lt(quotaCounters.endsAt, before)).returning({ subject: quotaCounters.subject });
  return gone.length;
}

function saturatingAdd(column: SQLWrapper, n: number): SQL {
  return sql`least(${column}::numeric + ${n}, ${BIGINT_MAX}::numeric)::bigint`;
}
