/**
 * `relayapi token issue|inspect|list|get|revoke`: TokenService rpcs (`seal` is offline:
 * seal-command.ts). `issue` prints the secret alone on stdout (so `TOKEN=$(...)` works) and the
 * id, which revoking needs, on stderr. `revoke` takes the id or the secret.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TokenStatus, type Token } from "../../gen/relayapi/v1/common_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { cliDefaults } from "../config.js";
import { durationFlag, parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";
import { sealCommand } from "./seal-command.js";
import { protoLimits, TOKEN_FLAGS } from "./token-flags.js";

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
      const limits = protoLimits(values);
      const expiresMs = durationFlag("expires-in", values["expires-in"]);
      const res = await serverClient(TokenService, flags).issueToken({
        provider: values.provider,
        credential: values.pool ? { case: "pool", value: values.pool } : { case: "upstreamKey", value: values["upstream-key"]! },
        subject: values.subject ?? "",
        plan: values.plan ?? "",
        limits,
        expiry: expiresMs === undefined ? { case: undefined } : { case: "expiresIn", value: { seconds: BigInt(Math.floor(expiresMs / 1000)) } },
      });
      if (json) console.log(JSON.stringify({ token: res.secret, ...view(res.token) }));
      else {
        console.log(res.secret);
        console.error(`relayapi: issued ${res.token?.id ?? "?"} (revoke with: relayapi token revoke ${res.token?.id ?? "<id>"})`);
      }
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
      else console.log(table(res.tokens));
      return;
    }
    case "revoke": {
      const given = positionals[0];
      if (!given) throw new UsageError("usage: relayapi token revoke <id | rai_secret>");
      // A secret: the relay itself says which token it is (IntrospectToken, the secret as the
      // bearer; no admin rpc looks tokens up by hash), then the id is revoked as usual.
      const isSecret = given.startsWith("rai_") || /^eyJ[^.]*(\.[^.]*){4}$/.test(given); // issued, or a sealed JWE
      const id = isSecret ? ((await serverClient(TokenService, flags, given).introspectToken({})).token?.id ?? "") : given;
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
    plan: t.plan || null,
    status: TokenStatus[t.status]?.toLowerCase(),
    callsUsed: Number(t.callsUsed),
    callsLeft: t.callsLeft === undefined ? null : Number(t.callsLeft),
    expiresAt: t.expiresAt ? timestampDate(t.expiresAt).toISOString() : null,
    maxCalls: num(t.limits?.maxCalls),
    rpm: num(t.limits?.rpm),
    maxOutputTokens: num(t.limits?.maxOutputTokens),
    maxN: num(t.limits?.maxN),
    budget: num(t.limits?.budgetTokens),
    budgetMicroUsd: num(t.limits?.budgetMicroUsd),
    microUsdUsed: Number(t.microUsdUsed),
    maxBodyBytes: num(t.limits?.maxBodyBytes),
    models: t.limits?.models ?? [],
    paths: t.limits?.paths ?? [],
    origins: t.limits?.origins ?? [],
    tools: t.limits?.toolsAllowed ?? false,
    bindJkt: t.limits?.bindJkt || null,
    upstreamKey: t.upstreamKeyHint,
  };
}

/** A header row and columns as wide as their widest cell, whatever the ids look like. */
function table(tokens: Token[]): string {
  const rows = [["ID", "STATUS", "PROVIDER", "SUBJECT", "CALLS", "EXPIRES"]];
  for (const t of tokens) {
    const v = view(t);
    const cap = v.callsLeft === null ? "∞" : String(Number(v.callsUsed) + Number(v.callsLeft));
    // "-" for an empty cell keeps every row as many words as the header, for awk and eyes alike.
    rows.push([t.id, String(v.status), t.provider || "-", t.subject || "-", `${v.callsUsed}/${cap}`, String(v.expiresAt ?? "never")]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

function print(t: Token | undefined, json: boolean): void {
  if (json) console.log(JSON.stringify(view(t)));
  else for (const [k, v] of Object.entries(view(t))) console.log(`${k.padEnd(12)} ${Array.isArray(v) ? v.join(",") : v}`);
}

const num = (v: bigint | number | undefined): number | null => (v === undefined ? null : Number(v));
