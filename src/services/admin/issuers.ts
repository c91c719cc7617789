/** AdminService issuer rpcs: create, list, rotate, disable (src/tokens/issuer-keyring.ts). */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  CreateIssuerResponseSchema,
  DisableIssuerResponseSchema,
  IssuerSchema,
  ListIssuersResponseSchema,
  RotateIssuerResponseSchema,
  type Issuer,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";
import type { IssuerWithKeys } from "../../db/queries/issuers.js";
import { RelayError } from "../../errors.js";
import type { IssuerKeyring } from "../../tokens/issuer-keyring.js";

export interface IssuerRpcDeps {
  keyring: IssuerKeyring;
  audit: AuditLog;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "createIssuer" | "listIssuers" | "rotateIssuer" | "disableIssuer">;

export function issuerRpcs(deps: IssuerRpcDeps): Rpcs {
  const { keyring, audit } = deps;
  const issuerNamed = async (name: string): Promise<Issuer> => {
    const found = (await keyring.list()).find((i) => i.name === name);
    if (!found) throw new RelayError("not_found", "no such issuer");
    return issuerToProto(found);
  };
  return {
    async createIssuer(req) {
      // An imported secret (`relayapi rai import`) becomes the first key; else a random one.
      const key = await keyring.create(req.name, req.secret.length > 0 ? req.secret : undefined);
      await audit.record({ actor: "admin", action: "CreateIssuer", target: req.name, detail: `kid=${key.kid}${req.secret.length > 0 ? " imported" : ""}` });
      return create(CreateIssuerResponseSchema, { issuer: await issuerNamed(req.name), kid: key.kid, secret: key.secret });
    },

    async listIssuers() {
      return create(ListIssuersResponseSchema, { issuers: (await keyring.list()).map(issuerToProto) });
    },

    async rotateIssuer(req) {
      const key = await keyring.rotate(req.name);
      await audit.record({ actor: "admin", action: "RotateIssuer", target: req.name, detail: `kid=${key.kid}` });
      return create(RotateIssuerResponseSchema, { issuer: await issuerNamed(req.name), kid: key.kid, secret: key.secret });
    },

    async disableIssuer(req) {
      await keyring.disable(req.name, req.kid);
      await audit.record({ actor: "admin", action: "DisableIssuer", target: req.name, detail: req.kid ? `kid=${req.kid}` : "all keys" });
      return create(DisableIssuerResponseSchema, { issuer: await issuerNamed(req.name) });
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
