/**
 * AdminService plan rpcs (issue 24): create, replace the limits of, list and delete the named
 * sets of per-subject quotas tokens and logins point at. A plan is deleted only while nothing
 * live names it (unrevoked, unexpired tokens; logins), unless forced: the calls of what still
 * names it are then refused by the enforcement (src/plans). Every change is audited with its
 * limits (a plan holds no secret).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AdminService,
  CreatePlanResponseSchema,
  DeletePlanResponseSchema,
  ListPlansResponseSchema,
  PlanSchema,
  UpdatePlanResponseSchema,
  type Plan,
} from "../../../gen/relayapi/v1/admin_service_pb.js";
import type { AuditLog } from "../../audit/audit-log.js";
import type { Db } from "../../db/client.js";
import { deletePlan, insertPlan, listPlans, planTokenCounts, planUsers, replacePlanLimits } from "../../db/queries/plans.js";
import type { PlanRow } from "../../db/schema/index.js";
import { RelayError } from "../../errors.js";
import { PLAN_NAME } from "../../plans/plan-name.js";
import { PLAN_LIMIT_NAMES, PLAN_LIMITS, planLimitsFromProto, planLimitsProblem, planLimitsToProto, type PlanLimitValues } from "../../plans/plan-limits.js";

export interface PlanRpcDeps {
  db: Db;
  audit: AuditLog;
  /** The plans calls read: reloaded after each write, so the change applies here at once (elsewhere within a second). */
  plans: { reload(): Promise<void> };
}

type Rpcs = Pick<ServiceImpl<typeof AdminService>, "createPlan" | "updatePlan" | "listPlans" | "deletePlan">;

export function planRpcs(deps: PlanRpcDeps): Rpcs {
  const { db, audit } = deps;
  const applied = (): Promise<void> => deps.plans.reload().catch(() => {});
  return {
    async createPlan(req) {
      const { name, limits } = checked(req.plan);
      if (!PLAN_NAME.test(name)) throw new RelayError("bad_request", "plan name must be 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit");
      const row = await insertPlan(db, name, limits);
      if (!row) throw new RelayError("already_exists", "a plan with this name exists");
      await applied();
      await audit.record({ actor: "admin", action: "CreatePlan", target: name, detail: describe(limits) });
      return create(CreatePlanResponseSchema, { plan: planToProto(row, 0) });
    },

    async updatePlan(req) {
      const { name, limits } = checked(req.plan);
      const row = await replacePlanLimits(db, name, limits);
      if (!row) throw new RelayError("not_found", "no such plan");
      await applied();
      await audit.record({ actor: "admin", action: "UpdatePlan", target: name, detail: describe(limits) });
      return create(UpdatePlanResponseSchema, { plan: planToProto(row, (await planUsers(db, name)).tokens) });
    },

    async listPlans() {
      const [rows, counts] = await Promise.all([listPlans(db), planTokenCounts(db)]);
      return create(ListPlansResponseSchema, { plans: rows.map((r) => planToProto(r, counts.get(r.name) ?? 0)) });
    },

    async deletePlan(req) {
      const users = await planUsers(db, req.name);
      if (!req.force && (users.tokens > 0 || users.logins > 0)) {
        throw new RelayError(
          "failed_precondition",
          `plan is named by ${users.tokens} live token(s) and ${users.logins} login(s): revoke them, or delete with force (their calls are then refused)`,
        );
      }
      if (!(await deletePlan(db, req.name))) throw new RelayError("not_found", "no such plan");
      await applied();
      await audit.record({
        actor: "admin",
        action: "DeletePlan",
        target: req.name,
        detail: req.force ? `forced tokens=${users.tokens} logins=${users.logins}` : "",
      });
      return create(DeletePlanResponseSchema, {});
    },
  };
}

/** The request's plan name and limits, or the 400 saying what is wrong with them. */
function checked(plan: Plan | undefined): { name: string; limits: PlanLimitValues } {
  if (!plan) throw new RelayError("bad_request", "plan is required");
  const limits = planLimitsFromProto(plan);
  const problem = planLimitsProblem(limits);
  if (problem !== undefined) throw new RelayError("bad_request", problem);
  return { name: plan.name, limits };
}

/** `calls_per_day=20 micro_usd_per_month=5000000 models=a,b` (the limits that are set). */
function describe(v: PlanLimitValues): string {
  const set = PLAN_LIMIT_NAMES.filter((n) => v[n] !== null).map((n) => `${PLAN_LIMITS[n].snake}=${v[n]}`);
  if (v.models.length > 0) set.push(`models=${v.models.join(",")}`);
  return set.join(" ") || "no limits";
}

function planToProto(row: PlanRow, tokenCount: number): Plan {
  return create(PlanSchema, {
    name: row.name,
    ...planLimitsToProto(row),
    tokenCount: BigInt(tokenCount),
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
  });
}
