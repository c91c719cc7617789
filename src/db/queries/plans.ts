/** Plans as the enforcement cache reads them (src/plans/plan-store.ts); the admin's writes live beside. */
import { asc } from "drizzle-orm";
import type { Db } from "../client.js";
import { plans, type PlanRow } from "../schema/index.js";

export async function listPlans(db: Db): Promise<PlanRow[]> {
  return db.select().from(plans).orderBy(asc(plans.name));
}
