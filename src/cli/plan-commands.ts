/**
 * `relayapi plan create|list|update|delete`: AdminService plan rpcs (issue 24), with the limit
 * flags of plan-flags.ts. `update` reads the plan and changes only the flags given.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { AdminService, type Plan } from "../../gen/relayapi/v1/admin_service_pb.js";
import { cliDefaults } from "../config.js";
import { microToUsd } from "../plans/micro-usd.js";
import { PLAN_LIMIT_NAMES, PLAN_LIMITS, planLimitsFromProto, planLimitsToProto } from "../plans/plan-limits.js";
import { parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";
import { applyPlanFlags, NO_PLAN_LIMITS, PLAN_FLAGS } from "./plan-flags.js";

export async function planCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, PLAN_FLAGS);
  const defaults = cliDefaults();
  const admin = serverClient(AdminService, { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey });
  const json = values.json === true;
  const name = positionals[0];
  switch (sub) {
    case "create": {
      if (!name) throw new UsageError("usage: relayapi plan create <name> [--calls-per-day N] [--usd-per-day X] [...]");
      const limits = applyPlanFlags(NO_PLAN_LIMITS, values);
      const res = await admin.createPlan({ plan: { name, ...planLimitsToProto(limits) } });
      console.log(json ? JSON.stringify(view(res.plan)) : `plan ${name} created: ${summary(res.plan)}`);
      return;
    }
    case "update": {
      if (!name) throw new UsageError("usage: relayapi plan update <name> [--calls-per-day N|none] [...]");
      // No GetPlan rpc: the list is small (plans are named by hand), and UpdatePlan replaces all.
      const current = (await admin.listPlans({})).plans.find((p) => p.name === name);
      if (!current) throw new Error(`no plan named ${name} (relayapi plan list shows them)`);
      const limits = applyPlanFlags(planLimitsFromProto(current), values);
      const res = await admin.updatePlan({ plan: { name, ...planLimitsToProto(limits) } });
      console.log(json ? JSON.stringify(view(res.plan)) : `plan ${name} updated: ${summary(res.plan)}`);
      return;
    }
    case "list": {
      const { plans } = await admin.listPlans({});
      if (json) console.log(JSON.stringify(plans.map(view)));
      else console.log(table(plans));
      return;
    }
    case "delete": {
      if (!name) throw new UsageError("usage: relayapi plan delete <name> [--force]");
      await admin.deletePlan({ name, force: values.force === true });
      console.log(`plan ${name} deleted`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi plan create|list|update|delete");
  }
}

/** A plan for `--json`: limits as numbers (null: none), dollars also as exact decimal strings. */
function view(p: Plan | undefined): Record<string, unknown> {
  if (!p) return {};
  const v = planLimitsFromProto(p);
  return {
    name: p.name,
    ...Object.fromEntries(PLAN_LIMIT_NAMES.map((n) => [n, v[n]])),
    usdPerDay: v.microUsdPerDay === null ? null : microToUsd(v.microUsdPerDay),
    usdPerMonth: v.microUsdPerMonth === null ? null : microToUsd(v.microUsdPerMonth),
    models: v.models,
    tokenCount: Number(p.tokenCount),
    createdAt: p.createdAt ? timestampDate(p.createdAt).toISOString() : null,
    updatedAt: p.updatedAt ? timestampDate(p.updatedAt).toISOString() : null,
  };
}

/** `calls/day 20, usd/month 5.00, models gpt-4o-mini` (the limits set), or `no limits`. */
function summary(p: Plan | undefined): string {
  if (!p) return "";
  const v = planLimitsFromProto(p);
  const parts = PLAN_LIMIT_NAMES.filter((n) => v[n] !== null).map((n) => `${PLAN_LIMITS[n].flag} ${cell(n, v[n])}`);
  if (v.models.length > 0) parts.push(`models ${v.models.join(",")}`);
  return parts.join(", ") || "no limits";
}

function cell(name: (typeof PLAN_LIMIT_NAMES)[number], value: number | null): string {
  if (value === null) return "-";
  return PLAN_LIMITS[name].unit === "usd" ? `$${microToUsd(value)}` : String(value);
}

/** A header row and columns as wide as their widest cell; "-" for no limit. */
function table(plans: Plan[]): string {
  const rows = [["NAME", "CALLS/DAY", "CALLS/MONTH", "TOKENS/DAY", "TOKENS/MONTH", "USD/DAY", "USD/MONTH", "RPM", "SESSION", "MODELS", "IN USE"]];
  for (const p of plans) {
    const v = planLimitsFromProto(p);
    rows.push([p.name, ...PLAN_LIMIT_NAMES.map((n) => cell(n, v[n])), v.models.join(",") || "any", String(p.tokenCount)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}
