/** `relayapi provider add|list|rm`: AdminService provider rpcs. */
import { AdminService, ApiShape, AuthStyle } from "../../gen/relayapi/v1/admin_service_pb.js";
import { cliDefaults } from "../config.js";
import { parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";

const SERVER_FLAGS = { server: { type: "string" }, "admin-key": { type: "string" }, json: { type: "boolean" } } as const;
const SHAPES: Record<string, ApiShape> = { openai: ApiShape.OPENAI, anthropic: ApiShape.ANTHROPIC, gemini: ApiShape.GEMINI };

export async function providerCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, {
    ...SERVER_FLAGS,
    "base-url": { type: "string" },
    auth: { type: "string" },
    header: { type: "string", multiple: true },
    shape: { type: "string" },
  });
  const defaults = cliDefaults();
  const client = serverClient(AdminService, { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey });
  switch (sub) {
    case "add": {
      const id = positionals[0];
      if (!id || positionals.length > 1) throw new UsageError("usage: relayapi provider add <id> --base-url URL [--auth ...]");
      if (!values["base-url"]) throw new UsageError("--base-url is required");
      const { authStyle, authName } = parseAuth(values.auth ?? "bearer");
      const shape = SHAPES[values.shape ?? "openai"];
      if (shape === undefined) throw new UsageError("--shape must be openai, anthropic or gemini");
      const defaultHeaders: Record<string, string> = {};
      for (const h of values.header ?? []) {
        const eq = h.indexOf("=");
        if (eq < 1) throw new UsageError("--header must look like NAME=VALUE");
        defaultHeaders[h.slice(0, eq)] = h.slice(eq + 1);
      }
      const res = await client.upsertProvider({ provider: { id, baseUrl: values["base-url"], authStyle, authName, defaultHeaders, shape } });
      console.log(values.json ? JSON.stringify({ id: res.provider?.id, baseUrl: res.provider?.baseUrl }) : `provider ${res.provider?.id} saved`);
      return;
    }
    case "list": {
      const res = await client.listProviders({});
      if (values.json) {
        console.log(JSON.stringify(res.providers.map((p) => ({ id: p.id, baseUrl: p.baseUrl, builtin: p.builtin }))));
        return;
      }
      for (const p of res.providers) console.log(`${p.id.padEnd(14)} ${p.builtin ? "built-in" : "custom  "} ${p.baseUrl}`);
      return;
    }
    case "rm": {
      const id = positionals[0];
      if (!id) throw new UsageError("usage: relayapi provider rm <id>");
      await client.deleteProvider({ id });
      console.log(`provider ${id} deleted`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi provider add|list|rm");
  }
}

function parseAuth(raw: string): { authStyle: AuthStyle; authName: string } {
  if (raw === "bearer") return { authStyle: AuthStyle.BEARER, authName: "" };
  const m = /^(header|query):([A-Za-z0-9_-]{1,64})$/.exec(raw);
  if (!m) throw new UsageError("--auth must be bearer, header:NAME or query:NAME");
  return { authStyle: m[1] === "header" ? AuthStyle.HEADER : AuthStyle.QUERY, authName: m[2]! };
}
