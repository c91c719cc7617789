/** A usage record as the writer hands it to a batch (src/db/queries/usage.ts), for the usage tests: a plain chat call unless overridden. */
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { UsageInsert } from "../../src/db/queries/usage.js";

export const USAGE_AT = Date.UTC(2026, 0, 15, 10, 30);

export function usageCall(tokenId: string, over: Partial<UsageInsert> = {}): UsageInsert {
  return {
    at: USAGE_AT,
    tokenId,
    subject: "alice",
    provider: "openai",
    model: "gpt-4o-mini",
    keyId: "",
    status: 200,
    outcome: Outcome.COMPLETE,
    promptTokens: 10,
    completionTokens: 5,
    totalTokens: 15,
    bytes: 100,
    latencyMs: 20,
    ...over,
  };
}

/** Label ids for the strings of usageCall's records (and a plan, "pro"), as usage-labels.ts would give them. */
export const USAGE_LABEL_IDS: ReadonlyMap<string, number> = new Map([
  ["tok", 1],
  ["alice", 2],
  ["openai", 3],
  ["gpt-4o-mini", 4],
  ["", 5],
  ["pro", 6],
]);

/** A record's optional columns as `usage_events` returns them (numbers as text), their defaults filled in. */
export function storedOptional(r: UsageInsert): Record<string, unknown> {
  return {
    attempts: r.attempts ?? "",
    flags: r.flags ?? 0,
    plan: r.plan ?? "",
    cached: String(r.cachedTokens ?? 0),
    reasoning: String(r.reasoningTokens ?? 0),
    cost: r.costMicroUsd === undefined || r.costMicroUsd === null ? null : String(r.costMicroUsd),
  };
}
