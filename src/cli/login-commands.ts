/**
 * `relayapi login add|list|enable|disable|remove` (issue 24.4): AdminService login rpcs. A login
 * trusts an OIDC identity provider, so the app's own ID tokens (Firebase Auth, Supabase, Auth0,
 * any OIDC issuer) are relay credentials; its limit flags are the token flags (token-flags.ts).
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AdminService, type Login } from "../../gen/relayapi/v1/admin_service_pb.js";
import { cliDefaults } from "../config.js";
import { parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";
import { LOGIN_FLAGS } from "./login-flags.js";
import { protoLimits } from "./token-flags.js";

const ADD_USAGE =
  "usage: relayapi login add <name> --issuer URL --audience AUD [--jwks-url URL] --plan NAME --provider ID (--upstream-key KEY | --pool NAME) [limits]";

export async function loginCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, LOGIN_FLAGS);
  const defaults = cliDefaults();
  const admin = () => serverClient(AdminService, { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey });
  const json = values.json === true;
  const name = positionals[0] ?? "";
  if (sub !== "list" && (name === "" || positionals.length > 1)) {
    throw new UsageError(sub === "add" ? ADD_USAGE : `usage: relayapi login ${sub ?? "add|list|enable|disable|remove"} <name>`);
  }
  switch (sub) {
    case "add": {
      for (const flag of ["issuer", "audience", "plan", "provider"] as const) {
        if (!values[flag]) throw new UsageError(`--${flag} is required; ${ADD_USAGE}`);
      }
      if (!values["upstream-key"] === !values.pool) throw new UsageError("one of --upstream-key or --pool is required");
      const res = await admin().addLogin({
        login: {
          name,
          issuer: values.issuer,
          audience: values.audience,
          // Empty: the relay discovers it from the issuer (src/logins/jwks-discovery.ts).
          jwksUrl: values["jwks-url"] ?? "",
          subjectClaim: values["subject-claim"] ?? "",
          plan: values.plan,
          provider: values.provider,
          pool: values.pool ?? "",
          limits: protoLimits(values),
        },
        upstreamKey: values["upstream-key"] ?? "",
      });
      console.log(
        json
          ? JSON.stringify(view(res.login))
          : `login ${name} added: ID tokens of ${values.issuer} for ${values.audience} now call ${values.provider} (keys from ${res.login?.jwksUrl ?? "?"})`,
      );
      return;
    }
    case "list": {
      if (positionals.length > 0) throw new UsageError("usage: relayapi login list");
      const { logins } = await admin().listLogins({});
      if (json) console.log(JSON.stringify(logins.map(view)));
      else
        for (const l of logins)
          console.log(`${l.name.padEnd(20)} ${l.disabled ? "disabled" : "enabled "} ${l.issuer} aud=${l.audience} plan=${l.plan} ${l.provider}`);
      return;
    }
    case "enable":
    case "disable": {
      const res = await admin().setLoginEnabled({ name, enabled: sub === "enable" });
      console.log(json ? JSON.stringify(view(res.login)) : `login ${name} ${sub}d`);
      return;
    }
    case "remove": {
      await admin().deleteLogin({ name });
      console.log(`login ${name} removed`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi login add|list|enable|disable|remove");
  }
}

function view(l: Login | undefined): Record<string, unknown> {
  if (!l) return {};
  return {
    name: l.name,
    issuer: l.issuer,
    audience: l.audience,
    jwksUrl: l.jwksUrl,
    subjectClaim: l.subjectClaim,
    plan: l.plan,
    provider: l.provider,
    pool: l.pool || null,
    upstreamKeyHint: l.upstreamKeyHint || null,
    models: l.limits?.models ?? [],
    disabled: l.disabled,
    createdAt: l.createdAt ? timestampDate(l.createdAt).toISOString() : null,
  };
}
