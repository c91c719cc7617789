/**
 * What a plan token's call draws on (issue 24): its subject's calendar windows with the plan's
 * limits, for the leases (calls, exact: src/tokens/call-leases.ts) and for the charges (LLM
 * tokens and micro-dollars, metered: src/tokens/call-charges.ts); and the 429 a spent window
 * answers, with `Retry-After` at the window's end and OpenAI-style `x-ratelimit-*` headers.
 */
import type { WindowCharge, WindowTake } from "../db/queries/quota-counter.js";
import { RelayError } from "../errors.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { Plan, PlanStore } from "./plan-store.js";
import type { QuotaClock, QuotaWindow } from "./quota-windows.js";

/** The windows a block of calls is taken from, as of one moment. */
export interface CallQuota {
  subject: string;
  /** Windows with a call limit, day before month. */
  windows: (WindowTake & { period: QuotaWindow["period"] })[];
  /** When the first of them ends: a block leased before this may not serve a call after it. */
  endsAt: number;
}

/** The windows a call's LLM tokens and cost are charged to. */
export interface ChargeQuota {
  subject: string;
  windows: (WindowCharge & { period: QuotaWindow["period"] })[];
  /** Whether a window limits dollars (then the model needs a price). */
  dollars: boolean;
}

export class PlanQuotas {
  constructor(
    readonly plans: PlanStore,
    readonly clock: QuotaClock,
  ) {}

  /** The plan a token names; a 412 when it names one that does not exist (deleted). */
  planOf(meta: TokenMeta): Plan | undefined {
    if (meta.plan === undefined) return undefined;
    const plan = this.plans.get(meta.plan);
    if (plan === undefined) throw new RelayError("failed_precondition", "this token's plan does not exist");
    return plan;
  }

  /**
   * The version of a token's plan: its last change (ms), -1 when it names one that does not
   * exist, undefined when it names none. A leased block granted under another version is given
   * back, so a call limit added or lowered applies to the next call (src/tokens/call-leases.ts).
   */
  stamp(meta: TokenMeta): number | undefined {
    if (meta.plan === undefined) return undefined;
    return this.plans.get(meta.plan)?.updatedAt.getTime() ?? -1;
  }

  /** The call windows of a token's plan now; undefined when it has no plan or no call limit. */
  callQuota(meta: TokenMeta): CallQuota | undefined {
    const plan = this.planOf(meta);
    if (plan === undefined || (plan.callsPerDay === null && plan.callsPerMonth === null)) return undefined;
    const { day, month } = this.clock.windows();
    const windows: CallQuota["windows"] = [];
    if (plan.callsPerDay !== null) windows.push({ period: "day", key: day.key, endsAt: day.endsAt, limit: plan.callsPerDay });
    if (plan.callsPerMonth !== null) windows.push({ period: "month", key: month.key, endsAt: month.endsAt, limit: plan.callsPerMonth });
    return { subject: meta.subject, windows, endsAt: Math.min(...windows.map((w) => w.endsAt)) };
  }

  /** Whether a token's plan limits LLM tokens or dollars (without building its windows). */
  meters(meta: TokenMeta): boolean {
    const plan = this.planOf(meta);
    return plan !== undefined && (plan.tokensPerDay ?? plan.tokensPerMonth ?? plan.microUsdPerDay ?? plan.microUsdPerMonth) !== null;
  }

  /** The charge windows of a token's plan now; undefined when it limits neither tokens nor dollars. */
  chargeQuota(meta: TokenMeta): ChargeQuota | undefined {
    const plan = this.planOf(meta);
    if (plan === undefined) return undefined;
    const { day, month } = this.clock.windows();
    const windows: ChargeQuota["windows"] = [];
    if (plan.tokensPerDay !== null || plan.microUsdPerDay !== null) {
      windows.push({ period: "day", key: day.key, endsAt: day.endsAt, tokenLimit: plan.tokensPerDay, usdLimit: plan.microUsdPerDay });
    }
    if (plan.tokensPerMonth !== null || plan.microUsdPerMonth !== null) {
      windows.push({ period: "month", key: month.key, endsAt: month.endsAt, tokenLimit: plan.tokensPerMonth, usdLimit: plan.microUsdPerMonth });
    }
    if (windows.length === 0) return undefined;
    return { subject: meta.subject, windows, dollars: windows.some((w) => w.usdLimit !== null) };
  }

  /** The 429 of a spent window. */
  spent(window: { period: QuotaWindow["period"]; endsAt: number }, unit: "calls" | "tokens" | "dollars", limit: number | null): RelayError {
    const seconds = Math.max(1, Math.ceil((window.endsAt - this.clock.now()) / 1000));
    const reset = resetText(seconds);
    const headers: Record<string, string> =
      unit === "calls" && limit !== null
        ? { "x-ratelimit-limit-requests": String(limit), "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": reset }
        : unit === "tokens" && limit !== null
          ? { "x-ratelimit-limit-tokens": String(limit), "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": reset }
          : {};
    const what = unit === "calls" ? "calls" : unit === "tokens" ? "LLM tokens" : "dollars";
    return new RelayError("quota_exhausted", `this user has used all of the plan's ${what} for this ${window.period}`, { retryAfter: seconds, headers });
  }
}

/** A duration as OpenAI's `x-ratelimit-reset-*` headers write it: `6h0m0s`, `12m3s`, `45s`. */
export function resetText(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
}
