/** AdminService provider rpcs: built-ins are read-only, custom providers are upserted by admins. */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  AuthStyle,
  DeleteProviderResponseSchema,
  ListProvidersResponseSchema,
  UpsertProviderResponseSchema,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";
import { RelayError } from "../../errors.js";
import type { ProviderRegistry } from "../../providers/registry.js";
import { providerToProto } from "../convert.js";

export interface ProviderRpcDeps {
  providers: ProviderRegistry;
  audit: AuditLog;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "listProviders" | "upsertProvider" | "deleteProvider">;

export function providerRpcs(deps: ProviderRpcDeps): Rpcs {
  const { providers, audit } = deps;
  return {
    listProviders() {
      const all = providers.list().sort((a, b) => Number(b.builtin) - Number(a.builtin) || a.id.localeCompare(b.id));
      return create(ListProvidersResponseSchema, { providers: all.map(providerToProto) });
    },

    async upsertProvider(req) {
      const p = req.provider;
      if (!p) throw new RelayError("bad_request", "provider is required");
      const stored = await providers.upsert({
        id: p.id,
        baseUrl: p.baseUrl.replace(/\/+$/, ""),
        authStyle: p.authStyle === AuthStyle.UNSPECIFIED ? AuthStyle.BEARER : p.authStyle,
        authName: p.authName,
        defaultHeaders: Object.fromEntries(Object.entries(p.defaultHeaders).map(([k, v]) => [k.toLowerCase(), v])),
        shape: p.shape || 1,
      });
      await audit.record({ actor: "admin", action: "UpsertProvider", target: stored.id, detail: `base_url=${stored.baseUrl}` });
      return create(UpsertProviderResponseSchema, { provider: providerToProto(stored) });
    },

    async deleteProvider(req) {
      await providers.delete(req.id);
      await audit.record({ actor: "admin", action: "DeleteProvider", target: req.id });
      return create(DeleteProviderResponseSchema, {});
    },
  };
}
