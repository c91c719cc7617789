/** `relayapi pool create|list|rm` and `relayapi keys add|list|enable|disable|rm`: AdminService pool rpcs. */
import { readFileSync } from "node:fs";
import { AdminService, PoolStrategy } from "../../gen/relayapi/v1/admin_service_pb.js";
import { cliDefaults } from "../config.js";
import { intFlag, parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";

const FLAGS = {
  server: { type: "string" },
  "admin-key": { type: "string" },
  json: { type: "boolean" },
  provider: { type: "string" },
  strategy: { type: "string" },
  pool: { type: "string" },
  "from-file": { type: "string" },
  weight: { type: "string" },
} as const;

const STRATEGIES: Record<string, PoolStrategy> = {
  "round-robin": PoolStrategy.ROUND_ROBIN,
  weighted: PoolStrategy.WEIGHTED,
  lru: PoolStrategy.LEAST_RECENTLY_USED,
};

function client(values: { server?: string | undefined; "admin-key"?: string | undefined }) {
  const defaults = cliDefaults();
  return serverClient(AdminService, { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey });
}

export async function poolCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, FLAGS);
  const admin = client(values);
  switch (sub) {
    case "create": {
      const name = positionals[0];
      if (!name || !values.provider) throw new UsageError("usage: relayapi pool create <name> --provider <id> [--strategy round-robin|weighted|lru]");
      const strategy = STRATEGIES[values.strategy ?? "round-robin"];
      if (strategy === undefined) throw new UsageError("--strategy must be round-robin, weighted or lru");
      const res = await admin.createPool({ name, provider: values.provider, strategy });
      console.log(values.json ? JSON.stringify({ name: res.pool?.name, provider: res.pool?.provider }) : `pool ${name} created`);
      return;
    }
    case "list": {
      const res = await admin.listPools({ provider: values.provider ?? "" });
      if (values.json)
        console.log(JSON.stringify(res.pools.map((p) => ({ name: p.name, provider: p.provider, keys: p.keyCount, enabled: p.enabledKeyCount }))));
      else for (const p of res.pools) console.log(`${p.name.padEnd(20)} ${p.provider.padEnd(12)} keys ${p.enabledKeyCount}/${p.keyCount} enabled`);
      return;
    }
    case "rm": {
      const name = positionals[0];
      if (!name) throw new UsageError("usage: relayapi pool rm <name>");
      await admin.deletePool({ name });
      console.log(`pool ${name} deleted`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi pool create|list|rm");
  }
}

export async function keysCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, FLAGS);
  const admin = client(values);
  switch (sub) {
    case "add": {
      if (!values.pool) throw new UsageError("--pool is required");
      const keys = [...positionals];
      if (values["from-file"])
        keys.push(
          ...readFileSync(values["from-file"], "utf8")
            .split(/\r?\n/)
            .filter((l) => l.trim() !== ""),
        );
      if (keys.length === 0) throw new UsageError("usage: relayapi keys add --pool <name> <key>... | --from-file F");
      const res = await admin.addKeys({ pool: values.pool, keys, weight: intFlag("weight", values.weight) ?? 0 });
      console.log(
        values.json
          ? JSON.stringify({ added: res.added, skipped: res.skipped, failed: res.failed })
          : `added ${res.added}, skipped ${res.skipped}, failed ${res.failed}`,
      );
      return;
    }
    case "list": {
      if (!values.pool) throw new UsageError("--pool is required");
      const res = await admin.listKeys({ pool: values.pool });
      const rows = res.keys.map((k) => ({ id: k.id, masked: k.masked, enabled: k.enabled, reason: k.disabledReason, calls: Number(k.calls) }));
      if (values.json) console.log(JSON.stringify(rows));
      else for (const k of rows) console.log(`${k.id}  ${k.masked.padEnd(16)} ${k.enabled ? "enabled " : "disabled"} calls ${k.calls} ${k.reason}`);
      return;
    }
    case "enable":
    case "disable": {
      const id = positionals[0];
      if (!id) throw new UsageError(`usage: relayapi keys ${sub} <id>`);
      await admin.setKeyEnabled({ id, enabled: sub === "enable" });
      console.log(`key ${id} ${sub}d`);
      return;
    }
    case "rm": {
      const id = positionals[0];
      if (!id) throw new UsageError("usage: relayapi keys rm <id>");
      await admin.deleteKey({ id });
      console.log(`key ${id} deleted`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi keys add|list|enable|disable|rm");
  }
}
