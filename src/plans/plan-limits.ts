/**
 * The one table of a plan's limits (issue 24): for each its proto/column name, its snake-case
 * name (messages), its CLI flag, its unit and its bounds; with the converters from and to proto
 * and the one validation, shared by AdminService (src/services/admin/plans.ts), the CLI
 * (src/cli/plan-commands.ts) and the console's Plans page. Browser-safe: no `node:` module and
 * only a type import of the generated proto.
 */
import type { Plan } from "../../gen/relayapi/v1/admin_service_pb.js";
import { MAX_LIST, TOKEN_LIMITS } from "../tokens/token-limits.js";

const ANY = Number.MAX_SAFE_INTEGER;

interface PlanLimitSpec {
  snake: string;
  /** `relayapi plan create --<flag>`; a `usd` limit's flag takes dollars. */
  flag: string;
  /** What a value counts: `usd` limits are stored in micro-dollars. */
  unit: "calls" | "tokens" | "usd" | "rpm" | "seconds";
  /** Valid values are whole numbers 1..max. */
  max: number;
  /** An int64 in the proto (a bigint there), an int32 otherwise. */
  wide: boolean;
}

/** In the order the CLI's help and the console show them. */
export const PLAN_LIMITS = {
  callsPerDay: { snake: "calls_per_day", flag: "calls-per-day", unit: "calls", max: ANY, wide: true },
  callsPerMonth: { snake: "calls_per_month", flag: "calls-per-month", unit: "calls", max: ANY, wide: true },
  tokensPerDay: { snake: "tokens_per_day", flag: "tokens-per-day", unit: "tokens", max: ANY, wide: true },
  tokensPerMonth: { snake: "tokens_per_month", flag: "tokens-per-month", unit: "tokens", max: ANY, wide: true },
  microUsdPerDay: { snake: "micro_usd_per_day", flag: "usd-per-day", unit: "usd", max: ANY, wide: true },
  microUsdPerMonth: { snake: "micro_usd_per_month", flag: "usd-per-month", unit: "usd", max: ANY, wide: true },
  // The same bound as a token's rpm (src/tokens/token-limits.ts).
  rpm: { snake: "rpm", flag: "rpm", unit: "rpm", max: TOKEN_LIMITS.rpm.max, wide: false },
  // A Realtime session longer than a day is a leak, not a use.
  maxSessionSeconds: { snake: "max_session_seconds", flag: "max-session-seconds", unit: "seconds", max: 86_400, wide: false },
} as const satisfies Record<string, PlanLimitSpec>;

export type PlanLimitName = keyof typeof PLAN_LIMITS;
export const PLAN_LIMIT_NAMES = Object.keys(PLAN_LIMITS) as PlanLimitName[];

/** A plan's limits as stored (the `plans` row's columns): null for none, [] for every model. */
export type PlanLimitValues = { [K in PlanLimitName]: number | null } & { models: string[] };

/** The limits of proto Plan fields, unchecked: an int64 beyond 2^53 is caught by planLimitsProblem. */
export function planLimitsFromProto(p: Partial<Omit<Plan, "$typeName" | "$unknown">> | undefined): PlanLimitValues {
  const proto = (p ?? {}) as Readonly<Record<string, unknown>>;
  const out: Record<string, unknown> = { models: [...((proto.models as string[] | undefined) ?? [])] };
  for (const name of PLAN_LIMIT_NAMES) {
    const v = proto[name];
    out[name] = v === undefined ? null : typeof v === "bigint" ? (v > BigInt(ANY) || v < -BigInt(ANY) ? Number.NaN : Number(v)) : v;
  }
  return out as PlanLimitValues;
}

/** The limits as proto Plan fields (int64 as bigint, none as undefined). */
export function planLimitsToProto(v: PlanLimitValues): Pick<Plan, PlanLimitName | "models"> {
  const out: Record<string, unknown> = { models: [...v.models] };
  for (const name of PLAN_LIMIT_NAMES) {
    const value = v[name];
    out[name] = value === null ? undefined : PLAN_LIMITS[name].wide ? BigInt(value) : value;
  }
  return out as Pick<Plan, PlanLimitName | "models">;
}

/** The rule a limit follows, as messages show it: `rpm must be 1-1000000`. */
export function planLimitRule(name: PlanLimitName): string {
  const spec: PlanLimitSpec = PLAN_LIMITS[name];
  return spec.max === ANY ? `${spec.snake} must be at least 1` : `${spec.snake} must be 1-${spec.max}`;
}

/** What is wrong with the limits, or undefined when every one is valid. */
export function planLimitsProblem(v: PlanLimitValues): string | undefined {
  for (const name of PLAN_LIMIT_NAMES) {
    const value = v[name];
    if (value !== null && !(Number.isSafeInteger(value) && value >= 1 && value <= PLAN_LIMITS[name].max)) return planLimitRule(name);
  }
  // Models are named as a token's models limit names them.
  if (v.models.length > MAX_LIST) return `models: at most ${MAX_LIST} entries`;
  if (!v.models.every((m) => TOKEN_LIMITS.models.entry(m))) return "models: invalid entry";
  return undefined;
}
