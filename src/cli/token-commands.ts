/** `relayapi token issue|inspect|list|get|revoke`: TokenService rpcs (`seal` is offline: seal-command.ts). */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TokenStatus, type Token } from "../../gen/relayapi/v1/common_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { cliDefaults } from "../config.js";
import { durationFlag, intFlag, listFlag, parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";
import { sealCommand, TOKEN_FLAGS } from "./seal-command.js";

const FLAGS = {
  ...TOKEN_FLAGS,
  server: { type: "string" },
  "admin-key": { type: "string" },
} as const;

export async function tokenCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  // `seal` runs offline with flags of its own (src/cli/seal-command.ts).
  if (sub === "seal") return sealCommand(rest);
  const { values, positionals } = parse(rest, FLAGS);
  const defaults = cliDefaults();
  const flags = { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey };
  const json = values.json === true;
  switch (sub) {
    case "issue": {
      if (!values.provider) throw new UsageError("--provider is required");
      if (!values["upstream-key"] === !values.pool) throw new UsageError("one of --upstream-key or --pool is required");
      const maxCalls = intFlag("max-calls", values["max-calls"]);
      const expiresMs = durationFlag("expires-in", values["expires-in"]);
      const res = await serverClient(TokenService, flags).issueToken({
        provider: values.provider,
        credential: values.pool ? { case: "pool", value: values.pool } : { case: "upstreamKey", value: values["upstream-key"]! },
        subject: values.subject ?? "",
        limits: {
          maxCalls: maxCalls === undefined ? undefined : BigInt(maxCalls),
          models: listFlag(values.models),
          paths: listFlag(values.paths),
          origins: listFlag(values.origins),
          bindJkt: values["bind-jkt"] ?? "",
        },
        expiry: expiresMs === undefined ? { case: undefined } : { case: "expiresIn", value: { seconds: BigInt(Math.floor(expiresMs / 1000)) } },
      });
      if (json) console.log(JSON.stringify({ token: res.secret, ...view(res.token) }));
      else console.log(res.secret);
      return;
    }
    case "inspect": {
      const secret = positionals[0];
      if (!secret) throw new UsageError("usage: relayapi token inspect <token>");
      const res = await serverClient(TokenService, flags, secret).introspectToken({});
      print(res.token, json);
      return;
    }
    case "get": {
      const id = positionals[0];
      if (!id) throw new UsageError("usage: relayapi token get <id>");
      print((await serverClient(TokenService, flags).getToken({ id })).token, json);
      return;
    }
    case "list": {
      const res = await serverClient(TokenService, flags).listTokens({ provider: values.provider ?? "", subject: values.subject ?? "", pageSize: 100 });
      if (json) console.log(JSON.stringify(res.tokens.map(view)));
      else for (const t of res.tokens) console.log(line(t));
      return;
    }
    case "revoke": {
      const id = positionals[0];
      if (!id) throw new UsageError("usage: relayapi token revoke <id>");
      const res = await serverClient(TokenService, flags).revokeToken({ id });
      console.log(json ? JSON.stringify(view(res.token)) : `token ${id} revoked`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi token issue|seal|inspect|list|get|revoke");
  }
}

function view(t: Token | undefined): Record<string, unknown> {
  if (!t) return {};
  return {
    id: t.id,
    provider: t.provider,
    subject: t.subject,
    status: TokenStatus[t.status]?.toLowerCase(),
    callsUsed: Number(t.callsUsed),
    callsLeft: t.callsLeft === undefined ? null : Number(t.callsLeft),
    expiresAt: t.expiresAt ? timestampDate(t.expiresAt).toISOString() : null,
    models: t.limits?.models ?? [],
    paths: t.limits?.paths ?? [],
    origins: t.limits?.origins ?? [],
    upstreamKey: t.upstreamKeyHint,
  };
}

function line(t: Token): string {
  const v = view(t);
  return `${t.id}  ${String(v.status).padEnd(9)} ${t.provider.padEnd(10)} calls ${v.callsUsed}/${v.callsLeft === null ? "∞" : Number(v.callsUsed) + Number(v.callsLeft)}  expires ${v.expiresAt}`;
}

function print(t: Token | undefined, json: boolean): void {
  if (json) console.log(JSON.stringify(view(t)));
  else for (const [k, v] of Object.entries(view(t))) console.log(`${k.padEnd(12)} ${Array.isArray(v) ? v.join(",") : v}`);
}
