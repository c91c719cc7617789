/**
 * `relayapi issuer create|list|rotate|disable` (AdminService issuer rpcs) and `relayapi pubkey`
 * (TokenService.GetSealingKey). An issuer key's secret is printed once, when it is made.
 */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AdminService, type Issuer } from "../../gen/relayapi/v1/admin_service_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { cliDefaults } from "../config.js";
import { parse, UsageError } from "./args.js";
import { serverClient, type ServerFlags } from "./client.js";

const SERVER_FLAGS = { server: { type: "string" }, "admin-key": { type: "string" }, json: { type: "boolean" } } as const;

export function serverFlags(values: { server?: string | undefined; "admin-key"?: string | undefined }): ServerFlags {
  const defaults = cliDefaults();
  return { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey };
}

export async function issuerCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub !== "create" && sub !== "list" && sub !== "rotate" && sub !== "disable") throw new UsageError("usage: relayapi issuer create|list|rotate|disable");
  const { values, positionals } = parse(rest, { ...SERVER_FLAGS, kid: { type: "string" } });
  const admin = () => serverClient(AdminService, serverFlags(values));
  const json = values.json === true;
  const name = positionals[0] ?? "";
  if (sub !== "list" && (name === "" || positionals.length > 1)) throw new UsageError(`usage: relayapi issuer ${sub} <name>`);
  if (values.kid !== undefined && sub !== "disable") throw new UsageError("--kid goes with issuer disable");
  switch (sub) {
    case "create": {
      const res = await admin().createIssuer({ name });
      printNewKey(res.issuer?.name ?? name, res.kid, res.secret, json);
      return;
    }
    case "rotate": {
      const res = await admin().rotateIssuer({ name });
      printNewKey(res.issuer?.name ?? name, res.kid, res.secret, json);
      return;
    }
    case "disable": {
      const res = await admin().disableIssuer({ name, kid: values.kid ?? "" });
      if (json) console.log(JSON.stringify(issuerView(res.issuer)));
      else console.log(values.kid ? `key ${values.kid} of issuer ${name} disabled` : `issuer ${name} disabled`);
      return;
    }
    case "list": {
      if (positionals.length > 0) throw new UsageError("usage: relayapi issuer list");
      const res = await admin().listIssuers({});
      if (json) {
        console.log(JSON.stringify(res.issuers.map(issuerView)));
        return;
      }
      for (const i of res.issuers) {
        const keys = i.keys.map((k) => `${k.kid} (${k.disabledAt ? "disabled" : "active"})`).join(", ");
        console.log(`${i.name.padEnd(20)} ${i.disabled ? "disabled" : "enabled "} ${keys}`);
      }
      return;
    }
  }
}

/** Prints a new key once; the reminder goes to stderr so stdout stays machine-readable. */
export function printNewKey(issuer: string, kid: string, secret: string, json: boolean): void {
  if (json) {
    console.log(JSON.stringify({ issuer, kid, secret, issuerKey: `${kid}:${secret}` }));
  } else {
    console.log(`issuer  ${issuer}\nkid     ${kid}\nsecret  ${secret}`);
  }
  console.error("relayapi: store the secret now, it is not shown again; seal tokens with --issuer-key <kid>:<secret> (or $RELAYAPI_ISSUER_KEY)");
}

export async function pubkeyCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, SERVER_FLAGS);
  if (positionals.length > 0) throw new UsageError("usage: relayapi pubkey [--server URL]");
  const res = await serverClient(TokenService, serverFlags(values)).getSealingKey({});
  console.log(JSON.stringify(JSON.parse(res.jwk)));
  if (!res.enabled) console.error("relayapi: note: this relay does not accept ECDH-ES tokens (its operator sets RELAYAPI_ACCEPT_BYOK_TOKENS=1 to)");
}

function issuerView(i: Issuer | undefined): Record<string, unknown> {
  if (!i) return {};
  const time = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : null);
  return {
    name: i.name,
    disabled: i.disabled,
    createdAt: time(i.createdAt),
    keys: i.keys.map((k) => ({ kid: k.kid, createdAt: time(k.createdAt), disabledAt: time(k.disabledAt) })),
  };
}
