/** Queries on `audit_events`. Each takes the db first and returns explicit columns. */
import { desc, lt } from "drizzle-orm";
import type { Db } from "../client.js";
import { auditEvents, type AuditEventRow } from "../schema/index.js";

export interface AuditInsert {
  actor: string;
  action: string;
  target: string;
  detail: string;
}

export async function insertAuditEvent(db: Db, event: AuditInsert): Promise<void> {
  await db.insert(auditEvents).values(event);
}

/**
 * One page of audit events, newest first, by keyset on the id (a sequence, so ids grow with
 * insertion time and a page never shifts when new events arrive). `beforeId` is the last id of
 * the previous page.
 */
export async function listAuditEvents(db: Db, limit: number, beforeId?: number): Promise<AuditEventRow[]> {
  return db
    .select({
      id: auditEvents.id,
      at: auditEvents.at,
      actor: auditEvents.actor,
      action: auditEvents.action,
      target: auditEvents.target,
      detail: auditEvents.detail,
    })
    .from(auditEvents)
    .where(beforeId === undefined ? undefined : lt(auditEvents.id, beforeId))
    .orderBy(desc(auditEvents.id))
    .limit(limit);
}
