/**
 * The flags of `relayapi plan create|update`, one per limit of the plan limits table
 * (src/plans/plan-limits.ts), and their help (help.ts loads this light module, not the command).
 * Dollar flags take an amount such as 0.25 and become exact micro-dollars (src/plans/micro-usd.ts);
 * `none` clears a limit (`--calls-per-day none`, `--models none`).
 */
import { usdToMicro } from "../plans/micro-usd.js";
import { PLAN_LIMIT_NAMES, PLAN_LIMITS, planLimitRule, type PlanLimitValues } from "../plans/plan-limits.js";
import { listFlag, UsageError } from "./args.js";
import type { FlagHelp } from "./help.js";

/** The limit flags with their help, in the table's order (help.ts shows them). */
export const PLAN_FLAG_HELP: FlagHelp[] = [
  ...PLAN_LIMIT_NAMES.map((name): FlagHelp => {
    const spec = PLAN_LIMITS[name];
    const per = name.endsWith("PerDay") ? "per calendar day" : name.endsWith("PerMonth") ? "per calendar month" : "";
    const help =
      spec.unit === "usd"
        ? `US dollars each subject may spend ${per}, e.g. 0.25 (up to 6 decimals)`
        : spec.unit === "rpm"
          ? "requests per minute of each subject (approximate)"
          : spec.unit === "seconds"
            ? "longest Realtime session, 1-86400 seconds"
            : `${spec.unit === "calls" ? "calls" : "LLM tokens (prompt + completion)"} of each subject ${per}`;
    return { flag: spec.flag, arg: spec.unit === "usd" ? "X" : "N", help: `${help} (default: no limit; none clears it)` };
  }),
  { flag: "models", arg: "A,B", help: "comma-separated models the plan allows (default: any; none clears it)" },
];

export const PLAN_FLAGS = {
  server: { type: "string" },
  "admin-key": { type: "string" },
  json: { type: "boolean" },
  force: { type: "boolean" },
  models: { type: "string" },
  ...Object.fromEntries(PLAN_LIMIT_NAMES.map((n) => [PLAN_LIMITS[n].flag, { type: "string" } as const])),
} as const;

type Values = Record<string, string | boolean | undefined>;

/** One limit flag's value: undefined when not given, null for `none`. */
function limitFlag(name: (typeof PLAN_LIMIT_NAMES)[number], raw: string | undefined): number | null | undefined {
  if (raw === undefined) return undefined;
  if (raw === "none") return null;
  const spec = PLAN_LIMITS[name];
  if (spec.unit === "usd") {
    const micro = usdToMicro(raw);
    if (micro === undefined) throw new UsageError(`--${spec.flag} must be an amount in US dollars with at most 6 decimals, e.g. 0.25, or none`);
    if (micro < 1) throw new UsageError(`--${spec.flag} must be at least 0.000001`);
    return micro;
  }
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${spec.flag} must be a whole number, or none`);
  if (n < 1 || n > spec.max) throw new UsageError(`--${spec.flag}: ${planLimitRule(name)}`);
  return n;
}

/** `base` with the flags given applied: a limit set, or cleared by `none`. */
export function applyPlanFlags(base: PlanLimitValues, values: Values): PlanLimitValues {
  const out = { ...base, models: [...base.models] };
  for (const name of PLAN_LIMIT_NAMES) {
    const v = limitFlag(name, values[PLAN_LIMITS[name].flag] as string | undefined);
    if (v !== undefined) out[name] = v;
  }
  const models = values.models as string | undefined;
  if (models !== undefined) out.models = models === "none" ? [] : listFlag(models);
  return out;
}

export const NO_PLAN_LIMITS: PlanLimitValues = {
  ...(Object.fromEntries(PLAN_LIMIT_NAMES.map((n) => [n, null])) as Record<keyof typeof PLAN_LIMITS, null>),
  models: [],
};
