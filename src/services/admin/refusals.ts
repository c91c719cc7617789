/**
 * AdminService refusal counts (issue 21.9): the console shows, beside the usage charts, how many
 * requests this instance refused and why. They are read from the metric the relay already keeps,
 * `relayapi_responses_total{entry,status_class,reason}` (src/observe/answer-counter.ts), rather
 * than from /metrics text: /metrics may be closed to browsers, the admin RPC is not.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Registry } from "prom-client";
import { AdminService, GetRefusalsResponseSchema } from "../../../gen/relayapi/v1/admin_service_pb.js";

export interface RefusalRpcDeps {
  metrics: { readonly registry: Registry };
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "getRefusals">;

/** The refusals an admin cares about: a client turned away, not a malformed request. */
const REFUSAL_REASONS: ReadonlySet<string> = new Set([
  "unauthenticated",
  "permission_denied",
  "rate_limited",
  "calls_exhausted",
  "budget_exhausted",
  "quota_exhausted",
]);

export function refusalRpcs(deps: RefusalRpcDeps): Rpcs {
  return {
    async getRefusals() {
      return create(GetRefusalsResponseSchema, { refusals: await refusalCounts(deps.metrics.registry) });
    },
  };
}

/** Counts by reason and status class, HTTP and RPC entries summed, largest first. */
export async function refusalCounts(registry: Registry): Promise<{ reason: string; statusClass: string; count: bigint }[]> {
  const metric = registry.getSingleMetric("relayapi_responses_total");
  if (metric === undefined) return [];
  const sums = new Map<string, { reason: string; statusClass: string; count: number }>();
  for (const v of (await metric.get()).values) {
    const reason = String(v.labels["reason"] ?? "");
    const statusClass = String(v.labels["status_class"] ?? "");
    if (!REFUSAL_REASONS.has(reason) || v.value <= 0) continue;
    const key = reason + " " + statusClass;
    const sum = sums.get(key) ?? { reason, statusClass, count: 0 };
    sum.count += v.value;
    sums.set(key, sum);
  }
  return [...sums.values()].sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)).map((s) => ({ ...s, count: BigInt(Math.round(s.count)) }));
}
