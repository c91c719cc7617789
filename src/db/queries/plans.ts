/**
 * Plans as the enforcement cache reads them (src/plans/plan-store.ts), and the admin's writes
 * beside (src/services/admin/plans.ts): create, replace the limits, count what names a plan, delete.
 */
import { and, asc, count, eq, gt, isNotNull, isNull, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { logins, plans, tokens, type NewPlanRow, type PlanRow } from "../schema/index.js";

export async function listPlans(db: Db): Promise<PlanRow[]> {
  return db.select().from(plans).orderBy(asc(plans.name));
}

/** A plan's limits as the admin sets them: every column but the name and the timestamps. */
export type PlanLimits = Omit<NewPlanRow, "name" | "createdAt" | "updatedAt">;

/** Tokens that still count against a plan: not revoked and not expired (sealed ones once used). */
const liveTokens = () => and(isNull(tokens.revokedAt), gt(tokens.expiresAt, sql`now()`));

/** Creates a plan; undefined when the name is taken. */
export async function insertPlan(db: Db, name: string, limits: PlanLimits): Promise<PlanRow | undefined> {
  const [row] = await db
    .insert(plans)
    .values({ ...limits, name })
    .onConflictDoNothing()
    .returning();
  return row;
}

/** Replaces every limit of a plan and bumps `updated_at`; undefined when there is no such plan. */
export async function replacePlanLimits(db: Db, name: string, limits: PlanLimits): Promise<PlanRow | undefined> {
  const [row] = await db
    .update(plans)
    .set({ ...limits, updatedAt: sql`now()` })
    .where(eq(plans.name, name))
    .returning();
  return row;
}

export async function findPlan(db: Db, name: string): Promise<PlanRow | undefined> {
  const [row] = await db.select().from(plans).where(eq(plans.name, name));
  return row;
}

/** How many live tokens name each plan (plans no live token names are absent). */
export async function planTokenCounts(db: Db): Promise<Map<string, number>> {
  const rows = await db
    .select({ plan: tokens.plan, n: count() })
    .from(tokens)
    .where(and(isNotNull(tokens.plan), liveTokens()))
    .groupBy(tokens.plan);
  return new Map(rows.map((r) => [r.plan ?? "", r.n]));
}

/** What still names a plan: live tokens and logins (any login row, enabled or not). */
export async function planUsers(db: Db, name: string): Promise<{ tokens: number; logins: number }> {
  const [t] = await db
    .select({ n: count() })
    .from(tokens)
    .where(and(eq(tokens.plan, name), liveTokens()));
  const [l] = await db.select({ n: count() }).from(logins).where(eq(logins.plan, name));
  return { tokens: t?.n ?? 0, logins: l?.n ?? 0 };
}

/** Deletes a plan; false when there was none. */
export async function deletePlan(db: Db, name: string): Promise<boolean> {
  return (await db.delete(plans).where(eq(plans.name, name)).returning({ name: plans.name })).length > 0;
}
