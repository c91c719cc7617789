/**
 * The bits of `usage_events.flags` (issue 18, findings 3 and 7): what the relay changed in a
 * usage record because the value it got could not be trusted or stored as is. A flagged row is
 * an anomaly to look at (counted in `/metrics`), not an error: the call itself went through.
 *
 * The bits are stored: never renumber one, only add.
 */
import type { Usage } from "../providers/types.js";

export const UsageFlag = {
  /** The provider reported usage numbers out of range (negative, fractional, not a number, huge): clamped. */
  USAGE_OUT_OF_RANGE: 1,
  /** The model name was clipped to 128 characters of a safe set. */
  MODEL_CHANGED: 2,
} as const;

export type UsageFlagName = keyof typeof UsageFlag;

/** Metric label of each flag (`relayapi_usage_anomalies_total{kind}`). */
export const ANOMALY_KIND: Readonly<Record<UsageFlagName, string>> = {
  USAGE_OUT_OF_RANGE: "usage_out_of_range",
  MODEL_CHANGED: "model_name_changed",
};

export const FLAG_NAMES = Object.keys(UsageFlag) as readonly UsageFlagName[];

/**
 * Usage as the meters hand it on: `flags` is set (non-zero) only when a number was clamped.
 * A subtype rather than a field of Usage: nothing but the usage record needs to know.
 */
export interface FlaggedUsage extends Usage {
  flags?: number;
}

/** The flag bits a meter set on `usage` (0 when none). */
export function usageFlags(usage: Usage | undefined): number {
  const flags = (usage as FlaggedUsage | undefined)?.flags;
  return typeof flags === "number" ? flags : 0;
}
