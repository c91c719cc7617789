/**
 * AdminService, composed from one module per area under src/services/admin/. Rpcs of the
 * contract without a module yet answer `unimplemented`.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import { auditRpcs, type AuditRpcDeps } from "./admin/audit.js";
import { issuerRpcs, type IssuerRpcDeps } from "./admin/issuers.js";
import { loginRpcs, type LoginRpcDeps } from "./admin/logins.js";
import { planRpcs, type PlanRpcDeps } from "./admin/plans.js";
import { poolRpcs, type PoolRpcDeps } from "./admin/pools.js";
import { priceRpcs, type PriceRpcDeps } from "./admin/prices.js";
import { providerRpcs, type ProviderRpcDeps } from "./admin/providers.js";
import { refusalRpcs, type RefusalRpcDeps } from "./admin/refusals.js";
import { retentionRpcs, type RetentionRpcDeps } from "./admin/retention.js";
import { usageRpcs, type UsageRpcDeps } from "./admin/usage.js";

export type AdminServiceDeps = IssuerRpcDeps &
  ProviderRpcDeps &
  PoolRpcDeps &
  UsageRpcDeps &
  AuditRpcDeps &
  RefusalRpcDeps &
  RetentionRpcDeps &
  PlanRpcDeps &
  LoginRpcDeps &
  PriceRpcDeps;

export function createAdminService(deps: AdminServiceDeps): Partial<ServiceImpl<typeof AdminService>> {
  return {
    ...issuerRpcs(deps),
    ...providerRpcs(deps),
    ...poolRpcs(deps),
    ...usageRpcs(deps),
    ...auditRpcs(deps),
    ...refusalRpcs(deps),
    ...retentionRpcs(deps),
    ...planRpcs(deps),
    ...loginRpcs(deps),
    ...priceRpcs(deps),
  };
}
