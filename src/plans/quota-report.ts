/**
 * What a token's holder has left (issue 24, GetQuota and `GET /api/quota`): the token's own
 * limits over its life, then its plan's windows for its subject, each with its limit, what is
 * used, what remains and when it resets, so an app can show "12 of 50 left today".
 *
 * Calls are read from the counters minus the calls this instance leased and has not used: exact
 * when one instance serves the subject; with several, another instance's unused block counts as
 * used until it is used or given back (at most an eighth of what was left per block, given back
 * after `leaseIdleMs` idle). LLM tokens and dollars include the reservations of calls in flight.
 */
import type { Db } from "../db/client.js";
import { readWindows } from "../db/queries/quota-counter.js";
import type { TokenRow } from "../db/schema/index.js";
import type { Plan } from "./plan-store.js";
import type { QuotaClock } from "./quota-windows.js";

export interface QuotaLine {
  scope: "token" | "plan";
  period: "life" | "day" | "month";
  unit: "calls" | "tokens" | "micro_usd";
  limit: number;
  used: number;
  remaining: number;
  /** Epoch ms; undefined for `life`. */
  resetsAt: number | undefined;
}

export interface QuotaReport {
  subject: string;
  plan: string;
  timeZone: string;
  windows: QuotaLine[];
}

export async function quotaReport(
  db: Db,
  row: TokenRow,
  plan: Plan | undefined,
  clock: QuotaClock,
  /** Calls this instance leased from a window and has not used. */
  unusedLeased: (subject: string, windowKey: string) => number,
): Promise<QuotaReport> {
  const windows: QuotaLine[] = [];
  const line = (
    scope: QuotaLine["scope"],
    period: QuotaLine["period"],
    unit: QuotaLine["unit"],
    limit: number | null,
    used: number,
    resetsAt?: number,
  ): void => {
    if (limit === null) return;
    windows.push({ scope, period, unit, limit, used, remaining: Math.max(0, limit - used), resetsAt });
  };
  line("token", "life", "calls", row.maxCalls, row.used);
  line("token", "life", "tokens", row.budgetTokens, row.tokensUsed);
  line("token", "life", "micro_usd", row.budgetMicroUsd, row.microUsdUsed);
  if (plan !== undefined) {
    const { day, month } = clock.windows();
    const counters = await readWindows(db, row.subject, [day.key, month.key]);
    for (const [w, limits] of [
      [day, { calls: plan.callsPerDay, tokens: plan.tokensPerDay, usd: plan.microUsdPerDay }],
      [month, { calls: plan.callsPerMonth, tokens: plan.tokensPerMonth, usd: plan.microUsdPerMonth }],
    ] as const) {
      const c = counters.get(w.key) ?? { calls: 0, llmTokens: 0, microUsd: 0 };
      line("plan", w.period, "calls", limits.calls, Math.max(0, c.calls - unusedLeased(row.subject, w.key)), w.endsAt);
      line("plan", w.period, "tokens", limits.tokens, c.llmTokens, w.endsAt);
      line("plan", w.period, "micro_usd", limits.usd, c.microUsd, w.endsAt);
    }
  }
  return { subject: row.subject, plan: row.plan ?? "", timeZone: clock.timeZone, windows };
}
