/**
 * AdminService: issuers and providers. The other rpcs of the contract (pools, keys, usage,
 * audit) answer `unimplemented` until their issues land.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AdminService,
  AuthStyle,
  CreateIssuerResponseSchema,
  DisableIssuerResponseSchema,
  IssuerSchema,
  ListIssuersResponseSchema,
  RotateIssuerResponseSchema,
  type Issuer,
  DeleteProviderResponseSchema,
  ListProvidersResponseSchema,
  UpsertProviderResponseSchema,
} from "../../gen/relayapi/v1/admin_service_pb.js";
import { RelayError } from "../errors.js";
import type { IssuerWithKeys } from "../db/queries/issuers.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { IssuerKeyring } from "../tokens/issuer-keyring.js";
import { providerToProto } from "./convert.js";

export interface AdminServiceDeps {
  providers: ProviderRegistry;
  keyring: IssuerKeyring;
}

export function createAdminService(deps: AdminServiceDeps): Partial<ServiceImpl<typeof AdminService>> {
  const { providers, keyring } = deps;
  const issuerNamed = async (name: string): Promise<Issuer> => {
    const found = (await keyring.list()).find((i) => i.name === name);
    if (!found) throw new RelayError("not_found", "no such issuer");
    return issuerToProto(found);
  };
  return {
    async createIssuer(req) {
      const key = await keyring.create(req.name);
      return create(CreateIssuerResponseSchema, { issuer: await issuerNamed(req.name), kid: key.kid, secret: key.secret });
    },

    async listIssuers() {
      return create(ListIssuersResponseSchema, { issuers: (await keyring.list()).map(issuerToProto) });
    },

    async rotateIssuer(req) {
      const key = await keyring.rotate(req.name);
      return create(RotateIssuerResponseSchema, { issuer: await issuerNamed(req.name), kid: key.kid, secret: key.secret });
    },

    async disableIssuer(req) {
      await keyring.disable(req.name, req.kid);
      return create(DisableIssuerResponseSchema, { issuer: await issuerNamed(req.name) });
    },

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
      return create(UpsertProviderResponseSchema, { provider: providerToProto(stored) });
    },

    async deleteProvider(req) {
      await providers.delete(req.id);
      return create(DeleteProviderResponseSchema, {});
    },
  };
}

function issuerToProto(i: IssuerWithKeys): Issuer {
  return create(IssuerSchema, {
    name: i.name,
    disabled: i.disabledAt !== null,
    createdAt: timestampFromDate(i.createdAt),
    keys: i.keys.map((k) => ({
      kid: k.kid,
      createdAt: timestampFromDate(k.createdAt),
      disabledAt: k.disabledAt ? timestampFromDate(k.disabledAt) : undefined,
    })),
  });
}
