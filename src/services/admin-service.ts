/**
 * AdminService, composed from one module per area under src/services/admin/. Rpcs of the
 * contract without a module yet answer `unimplemented`.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import { issuerRpcs, type IssuerRpcDeps } from "./admin/issuers.js";
import { providerRpcs, type ProviderRpcDeps } from "./admin/providers.js";

export type AdminServiceDeps = IssuerRpcDeps & ProviderRpcDeps;

export function createAdminService(deps: AdminServiceDeps): Partial<ServiceImpl<typeof AdminService>> {
  return { ...issuerRpcs(deps), ...providerRpcs(deps) };
}
