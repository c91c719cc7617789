/**
 * Issue 21.9: every pool and key action (create, add keys, enable, disable, delete) is in the
 * audit log, by pool name and key id, never with a key or a piece of one.
 */
import { expect, it } from "vitest";
import { PoolStrategy } from "../gen/relayapi/v1/admin_service_pb.js";
import { useRelay } from "./support/use-relay.js";

const KEY = "sk-audit-pool-key-ZZZZ9876543210";
const { relay } = useRelay({ mock: false });

it("pool and key actions are audited by id, without keys", async () => {
  await relay.admin.createPool({ name: "audited", provider: "openai", strategy: PoolStrategy.ROUND_ROBIN });
  const { keys } = await relay.admin.addKeys({ pool: "audited", keys: [KEY] });
  const id = keys[0]!.id;
  await relay.admin.setKeyEnabled({ id, enabled: false });
  await relay.admin.setKeyEnabled({ id, enabled: true });
  await relay.admin.deleteKey({ id });
  await relay.admin.deletePool({ name: "audited" });
  const { events } = await relay.admin.listAuditEvents({});
  const mine = events.filter((e) => e.target === "audited" || e.target === id).map((e) => [e.action, e.target]);
  expect(mine.sort()).toEqual(
    [
      ["CreatePool", "audited"],
      ["AddKeys", "audited"],
      ["DisableKey", id],
      ["EnableKey", id],
      ["DeleteKey", id],
      ["DeletePool", "audited"],
    ].sort(),
  );
  const text = JSON.stringify(events.map((e) => [e.action, e.target, e.detail]));
  expect(text).toContain(id);
  for (let i = 0; i + 8 <= KEY.length; i++) expect(text).not.toContain(KEY.slice(i, i + 8));
});
