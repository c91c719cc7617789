/**
 * AdminService login rpcs (issue 24.4): trust an OIDC identity provider so its ID tokens are
 * relay credentials (the JWKS URL given, or discovered from the issuer then), list, enable or
 * disable (every instance within a second, their users' WebSocket sessions closed) and remove
 * them (src/logins/login-store.ts). Audited by name with the issuer, audience and plan; the inline
 * upstream key goes in whole and only ever comes out masked, never into the audit log.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AddLoginResponseSchema,
  AdminService,
  DeleteLoginResponseSchema,
  ListLoginsResponseSchema,
  LoginSchema,
  SetLoginEnabledResponseSchema,
  type Login,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";
import type { LoginRow } from "../../db/schema/index.js";
import { RelayError } from "../../errors.js";
import type { LoginStore } from "../../logins/login-store.js";
import { limitsFromClaims, limitsFromProto, limitsToProto, noLimits } from "../../tokens/token-limits.js";

export interface LoginRpcDeps {
  logins: LoginStore;
  audit: AuditLog;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "addLogin" | "listLogins" | "setLoginEnabled" | "deleteLogin">;

export function loginRpcs(deps: LoginRpcDeps): Rpcs {
  const { logins, audit } = deps;
  return {
    async addLogin(req) {
      const l = req.login;
      if (l === undefined) throw new RelayError("bad_request", "login is required");
      const row = await logins.add({
        name: l.name,
        issuer: l.issuer,
        audience: l.audience,
        jwksUrl: l.jwksUrl || undefined,
        subjectClaim: l.subjectClaim || "sub",
        plan: l.plan,
        provider: l.provider,
        pool: l.pool || undefined,
        upstreamKey: req.upstreamKey || undefined,
        limits: limitsFromProto(l.limits),
      });
      await audit.record({
        actor: "admin",
        action: "AddLogin",
        target: row.name,
        detail: `issuer=${row.issuer} audience=${row.audience} jwks_url=${row.jwksUrl}${l.jwksUrl ? "" : " (discovered)"} plan=${row.plan} provider=${row.provider}${row.pool ? ` pool=${row.pool}` : ""}`,
      });
      return create(AddLoginResponseSchema, { login: loginToProto(row) });
    },

    async listLogins() {
      return create(ListLoginsResponseSchema, { logins: (await logins.list()).map(loginToProto) });
    },

    async setLoginEnabled(req) {
      const row = await logins.setEnabled(req.name, req.enabled);
      await audit.record({ actor: "admin", action: req.enabled ? "EnableLogin" : "DisableLogin", target: row.name });
      return create(SetLoginEnabledResponseSchema, { login: loginToProto(row) });
    },

    async deleteLogin(req) {
      await logins.delete(req.name);
      await audit.record({ actor: "admin", action: "DeleteLogin", target: req.name });
      return create(DeleteLoginResponseSchema, {});
    },
  };
}

function loginToProto(row: LoginRow): Login {
  let limits = noLimits();
  try {
    limits = limitsFromClaims(JSON.parse(row.limits) as object);
  } catch {
    // A row the relay cannot read admits nobody (LoginStore); listed, it shows no limits.
  }
  return create(LoginSchema, {
    name: row.name,
    issuer: row.issuer,
    audience: row.audience,
    jwksUrl: row.jwksUrl,
    subjectClaim: row.subjectClaim,
    plan: row.plan,
    provider: row.provider,
    pool: row.pool ?? "",
    upstreamKeyHint: row.upstreamKeyHint,
    limits: limitsToProto(limits),
    disabled: row.disabledAt !== null,
    createdAt: timestampFromDate(row.createdAt),
  });
}
