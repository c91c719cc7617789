/**
 * Every budget a call is charged against, admitted together (issue 24): the token's own LLM
 * tokens (`budget_tokens`) and dollars (`budget_micro_usd`), and its plan's daily and monthly
 * LLM tokens and dollars for its subject. Each is a reserve-then-settle ledger with the one rule
 * of src/tokens/budget-reservations.ts: the call is admitted only while every counter is below
 * its limit, is charged its maximum on each, and each is settled to the call's real charge when
 * it ends. So every counter stays below `limit + one call's maximum`, whatever the concurrency.
 *
 * A call's maximum in dollars is its input estimate at the input price plus its output bound at
 * the output price (src/pricing). A dollar limit needs a price: a call to a model without one
 * is refused with 403 unless the operator allows unpriced models (then it is charged $0).
 *
 * Admission is in order (token tokens, token dollars, plan windows); when one refuses, those
 * already reserved are given back and the call is refunded (no byte of it left).
 */
import { adjustWindows, readWindows, reserveWindows } from "../db/queries/quota-counter.js";
import type { Db } from "../db/client.js";
import { RelayError } from "../errors.js";
import type { ChargeQuota, PlanQuotas } from "../plans/plan-quotas.js";
import type { ModelPrice, Prices } from "../pricing/types.js";
import type { Usage } from "../providers/types.js";
import { type BudgetReservations, type CallEnd, chargeOf, type Reservation } from "./budget-reservations.js";
import type { TokenMeta } from "./token-meta.js";

/** Largest charge in micro-dollars one call settles to ($1,000,000: far beyond any call). */
const MAX_MICRO_USD_PER_CALL = 1_000_000_000_000;
const SETTLE_RETRY_MS = 1000;

/** What a call may cost at most, in LLM tokens and in micro-dollars, and how to price its usage. */
export interface CallCost {
  /** LLM tokens (input estimate + output bound). */
  maxTokens: number;
  inputTokens: number;
  outputTokens: number;
  /** The model's price; undefined when unpriced. */
  price: ModelPrice | undefined;
}

/** One admitted call's holds; `settle` replaces every reservation by the call's real charge. */
export class CallCharges {
  readonly #maxUsd: number;

  constructor(
    private readonly holds: readonly Hold[],
    private readonly maxTokens: number,
    maxUsd: number,
    private readonly costOf: (usage: Usage) => number | undefined,
  ) {
    this.#maxUsd = maxUsd;
  }

  /** Settles every hold once; never throws. */
  async settle(end: CallEnd): Promise<void> {
    const tokens = chargeOf(this.maxTokens, end);
    const usd = chargeOf(this.#maxUsd, end, this.costOf);
    await Promise.all(this.holds.map((h) => h.settle(tokens, usd)));
  }
}

interface Hold {
  settle(tokens: number, usd: number): Promise<void>;
}

export interface ChargeDeskDeps {
  db: Db;
  budgets: BudgetReservations;
  usdBudgets: BudgetReservations;
  quotas: PlanQuotas | undefined;
  prices: Prices | undefined;
  /** Admit calls to models without a price under dollar limits (charged $0). */
  allowUnpriced: boolean;
  onError: (err: unknown) => void;
}

export class ChargeDesk {
  constructor(private readonly deps: ChargeDeskDeps) {}

  /** Whether any budget applies to the token's calls (the engine then computes their maximum). */
  applies(meta: TokenMeta): boolean {
    return meta.budgetTokens !== null || meta.budgetMicroUsd !== null || this.deps.quotas?.meters(meta) === true;
  }

  /**
   * Reserves the call's maximum on every ledger of the token; undefined when none applies.
   * Throws the refusal (429, or 403 for an unpriced model under a dollar limit) after giving
   * back what was reserved; the caller refunds the call.
   */
  async admit(meta: TokenMeta, cost: CallCost): Promise<CallCharges | undefined> {
    const plan = this.deps.quotas?.chargeQuota(meta);
    if (meta.budgetTokens === null && meta.budgetMicroUsd === null && plan === undefined) return undefined;
    const needsPrice = meta.budgetMicroUsd !== null || plan?.dollars === true;
    const { price } = cost;
    if (needsPrice && price === undefined && !this.deps.allowUnpriced) {
      throw new RelayError("permission_denied", "this model has no price, and this token's dollar limit needs one");
    }
    const prices = this.deps.prices;
    const maxUsd = price === undefined || prices === undefined ? 0 : prices.maxCostOf(price, cost.inputTokens, cost.outputTokens);
    const costOf = (u: Usage): number | undefined => (price === undefined || prices === undefined ? 0 : prices.costOf(price, u));
    const holds: Hold[] = [];
    try {
      if (meta.budgetTokens !== null) {
        const r = await this.deps.budgets.reserve(meta.id, cost.maxTokens, meta.budgetTokens);
        if (!r) throw new RelayError("budget_exhausted", "this token has used all of its LLM token budget");
        holds.push(tokenHold(r));
      }
      if (meta.budgetMicroUsd !== null) {
        const r = await this.deps.usdBudgets.reserve(meta.id, maxUsd, meta.budgetMicroUsd, MAX_MICRO_USD_PER_CALL);
        if (!r) throw new RelayError("budget_exhausted", "this token has used all of its dollar budget");
        holds.push(usdHold(r));
      }
      if (plan !== undefined) holds.push(await this.#reservePlan(plan, cost.maxTokens, maxUsd));
    } catch (e) {
      await Promise.all(holds.map((h) => h.settle(0, 0)));
      throw e;
    }
    return new CallCharges(holds, cost.maxTokens, maxUsd, costOf);
  }

  async #reservePlan(plan: ChargeQuota, tokens: number, usd: number): Promise<Hold> {
    const { db, quotas, onError } = this.deps;
    const result = await reserveWindows(db, plan.subject, plan.windows, tokens, usd);
    if (!result.ok) {
      const w = plan.windows[result.index]!;
      // Which of the window's limits is spent decides the 429's message and headers.
      let unit: "tokens" | "dollars" = w.tokenLimit === null ? "dollars" : "tokens";
      if (w.tokenLimit !== null && w.usdLimit !== null) {
        const now = (await readWindows(db, plan.subject, [w.key]).catch(() => undefined))?.get(w.key);
        if (now !== undefined && now.llmTokens < w.tokenLimit) unit = "dollars";
      }
      throw quotas!.spent(w, unit, unit === "tokens" ? w.tokenLimit : w.usdLimit);
    }
    const keys = plan.windows.map((w) => w.key);
    let settled = false;
    return {
      async settle(chargeTokens, chargeUsd) {
        if (settled) return;
        settled = true;
        const dt = Math.max(0, Math.round(chargeTokens)) - tokens;
        const du = Math.max(0, Math.round(chargeUsd)) - usd;
        if (dt === 0 && du === 0) return;
        try {
          await adjustWindows(db, plan.subject, keys, dt, du);
        } catch {
          // As a token's budget: tried once more off the call's path; lost, it over-charges, never under.
          setTimeout(() => void adjustWindows(db, plan.subject, keys, dt, du).catch(onError), SETTLE_RETRY_MS).unref();
        }
      },
    };
  }
}

function tokenHold(r: Reservation): Hold {
  return { settle: (tokens) => r.settle(tokens) };
}

function usdHold(r: Reservation): Hold {
  return { settle: (_, usd) => r.settle(usd) };
}
