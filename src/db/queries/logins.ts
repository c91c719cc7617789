/** Queries on `logins` (src/logins/login-store.ts): the trusted identity providers. */
import { asc, count, eq, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { logins, plans, type LoginRow, type NewLoginRow } from "../schema/index.js";

export async function listLogins(db: Db): Promise<LoginRow[]> {
  return db.select().from(logins).orderBy(asc(logins.name));
}

/** Inserts a login; undefined when the name is taken. */
export async function insertLogin(db: Db, row: NewLoginRow): Promise<LoginRow | undefined> {
  const [created] = await db.insert(logins).values(row).onConflictDoNothing().returning();
  return created;
}

/**
 * Enables or disables a login; `updated_at` moves with it, which is how every instance's reload
 * sees the change. Undefined when there is no such login.
 */
export async function setLoginDisabled(db: Db, name: string, disabled: boolean): Promise<LoginRow | undefined> {
  const [row] = await db
    .update(logins)
    .set({ disabledAt: disabled ? sql`coalesce(${logins.disabledAt}, now())` : null, updatedAt: sql`now()` })
    .where(eq(logins.name, name))
    .returning();
  return row;
}

export async function deleteLogin(db: Db, name: string): Promise<boolean> {
  return (await db.delete(logins).where(eq(logins.name, name)).returning({ name: logins.name })).length > 0;
}

export async function planExists(db: Db, name: string): Promise<boolean> {
  const [row] = await db.select({ name: plans.name }).from(plans).where(eq(plans.name, name));
  return row !== undefined;
}

/** How many logins name `plan` (DeletePlan refuses while some do, unless forced). */
export async function countLoginsWithPlan(db: Db, plan: string): Promise<number> {
  const [row] = await db.select({ n: count() }).from(logins).where(eq(logins.plan, plan));
  return row?.n ?? 0;
}
