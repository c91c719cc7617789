/**
 * AdminService retention rpcs (issue 23): PruneUsage runs a retention pass now (or counts what
 * it would delete), GetStorage returns the latest storage sample (src/usage/usage-storage.ts).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AdminService, GetStorageResponseSchema, PruneUsageResponseSchema } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { RelayError } from "../../errors.js";
import type { UsageMaintenance } from "../../usage/usage-maintenance.js";

export interface RetentionRpcDeps {
  /** Absent in tests that build the service without background work: the rpcs then refuse. */
  maintenance?: UsageMaintenance | undefined;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "pruneUsage" | "getStorage">;

/** 100 years: anything longer is a typo, and Date arithmetic stays exact. */
const MAX_OLDER_THAN_SECONDS = 100n * 366n * 86_400n;

export function retentionRpcs(deps: RetentionRpcDeps): Rpcs {
  const maintenance = (): UsageMaintenance => {
    if (deps.maintenance === undefined) throw new RelayError("unavailable", "usage maintenance is not running");
    return deps.maintenance;
  };
  return {
    async pruneUsage(req) {
      if (req.olderThanSeconds < 0n || req.olderThanSeconds > MAX_OLDER_THAN_SECONDS) {
        throw new RelayError("bad_request", "older_than_seconds must be between 0 and 100 years");
      }
      const olderThanMs = req.olderThanSeconds > 0n ? Number(req.olderThanSeconds) * 1000 : undefined;
      const r = await maintenance().pruner.prune({ olderThanMs, dryRun: req.dryRun, actor: "admin" });
      return create(PruneUsageResponseSchema, {
        rawCutoff: r.rawCutoff ? timestampFromDate(r.rawCutoff) : undefined,
        rawRows: BigInt(r.rawRows),
        rollupRows: BigInt(r.rollupRows),
        auditRows: BigInt(r.auditRows),
        ran: r.ran,
      });
    },

    async getStorage() {
      const m = maintenance();
      const s = m.storage.last ?? (await m.storage.refresh());
      return create(GetStorageResponseSchema, {
        databaseBytes: BigInt(s.databaseBytes),
        tables: Object.entries(s.tables).map(([table, t]) => ({ table, bytes: BigInt(t.bytes), rows: BigInt(t.rows) })),
        diskUsed: s.diskUsed ?? 0,
        retentionDays: [m.retention.usage, m.retention.rollups, m.retention.audit],
      });
    },
  };
}
