/** AdminService audit rpc: ListAuditEvents pages through src/audit/audit-log.ts, newest first. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AdminService, ListAuditEventsResponseSchema } from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";

export interface AuditRpcDeps {
  audit: AuditLog;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "listAuditEvents">;

export function auditRpcs(deps: AuditRpcDeps): Rpcs {
  const { audit } = deps;
  return {
    async listAuditEvents(req) {
      const page = await audit.list(req.pageSize, req.pageToken);
      return create(ListAuditEventsResponseSchema, {
        events: page.events.map((e) => ({ ...e, at: timestampFromDate(e.at) })),
        nextPageToken: page.nextPageToken,
      });
    },
  };
}
