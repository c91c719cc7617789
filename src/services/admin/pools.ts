/**
 * AdminService key pool rpcs. Keys go in whole and only ever come out masked. Every change is
 * in the audit log (issue 21.9) by pool name and key id: never a key, not even masked.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  AddKeysResponseSchema,
  CreatePoolResponseSchema,
  DeleteKeyResponseSchema,
  DeletePoolResponseSchema,
  ListKeysResponseSchema,
  ListPoolsResponseSchema,
  PoolSchema,
  SetKeyEnabledResponseSchema,
  UpstreamKeySchema,
  type Pool,
  type PoolStrategy,
  type UpstreamKey,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";
import type { PoolWithCounts } from "../../db/queries/pools.js";
import type { UpstreamKeyRow } from "../../db/schema/index.js";
import type { PoolRegistry } from "../../keys/pool-registry.js";

export interface PoolRpcDeps {
  pools: PoolRegistry;
  audit: AuditLog;
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "createPool" | "listPools" | "deletePool" | "addKeys" | "listKeys" | "setKeyEnabled" | "deleteKey">;

export function poolRpcs(deps: PoolRpcDeps): Rpcs {
  const { pools, audit } = deps;
  return {
    async createPool(req) {
      const row = await pools.create(req.name, req.provider, req.strategy);
      await audit.record({ actor: "admin", action: "CreatePool", target: row.name, detail: `provider=${row.provider}` });
      return create(CreatePoolResponseSchema, { pool: poolToProto({ ...row, keyCount: 0, enabledKeyCount: 0 }) });
    },

    async listPools(req) {
      return create(ListPoolsResponseSchema, { pools: (await pools.list(req.provider || undefined)).map(poolToProto) });
    },

    async deletePool(req) {
      await pools.delete(req.name);
      await audit.record({ actor: "admin", action: "DeletePool", target: req.name });
      return create(DeletePoolResponseSchema, {});
    },

    async addKeys(req) {
      const result = await pools.addKeys(req.pool, req.keys, req.weight);
      const ids = result.added.map((k) => k.id).join(",");
      await audit.record({
        actor: "admin",
        action: "AddKeys",
        target: req.pool,
        detail: `added=${result.added.length} skipped=${result.skipped} failed=${result.failed}${ids ? ` ids=${ids}` : ""}`,
      });
      return create(AddKeysResponseSchema, {
        added: result.added.length,
        skipped: result.skipped,
        failed: result.failed,
        keys: result.added.map(keyToProto),
      });
    },

    async listKeys(req) {
      return create(ListKeysResponseSchema, { keys: (await pools.listKeys(req.pool)).map(keyToProto) });
    },

    async setKeyEnabled(req) {
      const key = await pools.setEnabled(req.id, req.enabled);
      await audit.record({ actor: "admin", action: req.enabled ? "EnableKey" : "DisableKey", target: key.id, detail: `pool=${key.pool}` });
      return create(SetKeyEnabledResponseSchema, { key: keyToProto(key) });
    },

    async deleteKey(req) {
      await pools.deleteKey(req.id);
      await audit.record({ actor: "admin", action: "DeleteKey", target: req.id });
      return create(DeleteKeyResponseSchema, {});
    },
  };
}

function poolToProto(p: PoolWithCounts): Pool {
  return create(PoolSchema, {
    name: p.name,
    provider: p.provider,
    strategy: p.strategy as PoolStrategy,
    keyCount: p.keyCount,
    enabledKeyCount: p.enabledKeyCount,
    createdAt: timestampFromDate(p.createdAt),
  });
}

function keyToProto(k: UpstreamKeyRow): UpstreamKey {
  return create(UpstreamKeySchema, {
    id: k.id,
    pool: k.pool,
    masked: k.masked,
    enabled: k.enabled,
    disabledReason: k.disabledReason,
    weight: k.weight,
    cooldownUntil: k.cooldownUntil ? timestampFromDate(k.cooldownUntil) : undefined,
    lastUsedAt: k.lastUsedAt ? timestampFromDate(k.lastUsedAt) : undefined,
    calls: BigInt(k.calls),
  });
}
