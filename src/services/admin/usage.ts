/**
 * AdminService usage rpcs: GetUsage (aggregates of the stored usage records) and WatchUsage
 * (the live feed of src/usage/usage-writer.ts; per instance: a watcher sees the calls of the
 * instance it is connected to).
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  GetUsageResponseSchema,
  UsageEventSchema,
  UsageGroup,
  WatchUsageResponseSchema,
  type UsageEvent as UsageEventMsg,
  type WatchUsageResponse,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import { UsageSchema, type Usage as UsageMsg } from "../../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../../db/client.js";
import { aggregateUsage, type UsageDimension } from "../../db/queries/usage.js";
import { RelayError } from "../../errors.js";
import type { UsageEvent, UsageWriter } from "../../usage/usage-writer.js";
import { usageToProto } from "../convert.js";

export interface UsageRpcDeps {
  db: Db;
  usage: UsageWriter;
  /** Aborts when the server shuts down: live feeds end so the server can drain. */
  shutdown: AbortSignal;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "getUsage" | "watchUsage">;

const DAY_MS = 86_400_000;
const MAX_BUCKETS = 10_000;
const MAX_ROWS = 10_000;
/** Events a slow watcher may fall behind by; older ones are dropped for it (a live view, not a log). */
const WATCH_BUFFER = 1_000;

const DIMENSION: Record<UsageGroup, UsageDimension | undefined> = {
  [UsageGroup.UNSPECIFIED]: undefined,
  [UsageGroup.TOKEN]: "token",
  [UsageGroup.SUBJECT]: "subject",
  [UsageGroup.PROVIDER]: "provider",
  [UsageGroup.MODEL]: "model",
  [UsageGroup.PLAN]: "plan",
};

export function usageRpcs(deps: UsageRpcDeps): Rpcs {
  const { db, usage, shutdown } = deps;
  return {
    async getUsage(req) {
      const end = req.end ? timestampDate(req.end) : new Date();
      const start = req.start ? timestampDate(req.start) : new Date(end.getTime() - DAY_MS);
      if (!(end.getTime() > start.getTime())) throw new RelayError("bad_request", "end must be after start");
      if (!(req.groupBy in DIMENSION)) throw new RelayError("bad_request", "unknown group_by");
      const bucketSeconds = req.bucketSeconds;
      if (bucketSeconds < 0) throw new RelayError("bad_request", "bucket_seconds must not be negative");
      if (bucketSeconds > 0 && (end.getTime() - start.getTime()) / (bucketSeconds * 1000) > MAX_BUCKETS) {
        throw new RelayError("bad_request", `more than ${MAX_BUCKETS} buckets: widen bucket_seconds or narrow the range`);
      }
      const rows = await aggregateUsage(db, { start, end, groupBy: DIMENSION[req.groupBy], bucketSeconds, limit: MAX_ROWS + 1 });
      if (rows.length > MAX_ROWS) throw new RelayError("bad_request", `more than ${MAX_ROWS} rows: narrow the range or widen bucket_seconds`);
      return create(GetUsageResponseSchema, {
        rows: rows.map((r) => ({
          bucketStart: timestampFromDate(r.bucketStart),
          key: r.key,
          calls: BigInt(r.calls),
          usage: usageToProto(r),
          errors: BigInt(r.errors),
          costMicroUsd: BigInt(r.costMicroUsd),
          unpricedCalls: BigInt(r.unpricedCalls),
        })),
      });
    },

    async *watchUsage(req, ctx) {
      const signal = AbortSignal.any([ctx.signal, shutdown]);
      const pending: UsageEvent[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = usage.subscribe(
        (e) => {
          if (pending.length >= WATCH_BUFFER) pending.shift();
          pending.push(e);
          wake?.();
        },
        { provider: req.provider || undefined },
      );
      const onAbort = (): void => wake?.();
      signal.addEventListener("abort", onAbort);
      try {
        while (!signal.aborted) {
          const event = pending.shift();
          if (event) {
            yield watchResponse(event);
            continue;
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        unsubscribe();
        signal.removeEventListener("abort", onAbort);
      }
    },
  };
}

function watchResponse(e: UsageEvent): WatchUsageResponse {
  return create(WatchUsageResponseSchema, { event: usageEventToProto(e) });
}

function usageEventToProto(e: UsageEvent): UsageEventMsg {
  return create(UsageEventSchema, {
    tokenId: e.tokenId,
    subject: e.subject,
    provider: e.provider,
    model: e.model ?? "",
    keyId: e.keyId ?? "",
    status: e.status,
    outcome: e.outcome,
    usage: eventUsage(e),
    latencyMs: BigInt(Math.round(e.latencyMs)),
    at: timestampFromDate(e.at),
    bytes: BigInt(e.bytes),
    plan: e.plan ?? "",
  });
}

/**
 * The call's usage with its cached and reasoning parts and its cost (issue 24); a call that
 * reported no usage but has a cost (priced at 0) still carries it. Unpriced: no cost field.
 */
function eventUsage(e: UsageEvent): UsageMsg | undefined {
  const u = e.usage;
  if (u === undefined && e.costMicroUsd === undefined) return undefined;
  return create(UsageSchema, {
    promptTokens: BigInt(u?.promptTokens ?? 0),
    completionTokens: BigInt(u?.completionTokens ?? 0),
    totalTokens: BigInt(u?.totalTokens ?? 0),
    cachedTokens: BigInt(e.usage?.cachedTokens ?? 0),
    reasoningTokens: BigInt(e.usage?.reasoningTokens ?? 0),
    costMicroUsd: e.costMicroUsd === undefined ? undefined : BigInt(e.costMicroUsd),
  });
}
