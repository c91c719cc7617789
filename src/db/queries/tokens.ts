/** Queries on `tokens`. Each takes the db first and returns explicit columns. */
import { and, desc, eq, gt, isNotNull, isNull, lt, lte, or, sql, type SQL } from "drizzle-orm";
import type { Db } from "../client.js";
import { tokens, type NewTokenRow, type TokenRow } from "../schema/index.js";

export async function insertToken(db: Db, row: NewTokenRow): Promise<TokenRow> {
  const [inserted] = await db.insert(tokens).values(row).returning();
  if (!inserted) throw new Error("insert returned no row");
  return inserted;
}

export async function findTokenById(db: Db, id: string): Promise<TokenRow | undefined> {
  const [row] = await db.select().from(tokens).where(eq(tokens.id, id)).limit(1);
  return row;
}

export async function findTokenBySecretHash(db: Db, secretHash: string): Promise<TokenRow | undefined> {
  const [row] = await db.select().from(tokens).where(eq(tokens.secretHash, secretHash)).limit(1);
  return row;
}

export interface UseResult {
  used: number;
  maxCalls: number | null;
}

/** Revokes a token; returns the row (already revoked rows keep their first revocation time). */
export async function revokeToken(db: Db, id: string): Promise<TokenRow | undefined> {
  const [row] = await db
    .update(tokens)
    .set({ revokedAt: sql`coalesce(${tokens.revokedAt}, now())` })
    .where(eq(tokens.id, id))
    .returning();
  return row;
}

export interface TokenFilter {
  provider?: string | undefined;
  subject?: string | undefined;
  kind?: number | undefined;
  status?: "active" | "revoked" | "expired" | "exhausted" | undefined;
}

export interface PageCursor {
  createdAt: Date;
  id: string;
}

/** One page of tokens, newest first, by keyset (created_at, id) so pages stay stable. */
export async function listTokens(db: Db, filter: TokenFilter, limit: number, after?: PageCursor): Promise<TokenRow[]> {
  const where: (SQL | undefined)[] = [];
  if (filter.provider) where.push(eq(tokens.provider, filter.provider));
  if (filter.subject) where.push(eq(tokens.subject, filter.subject));
  if (filter.kind) where.push(eq(tokens.kind, filter.kind));
  switch (filter.status) {
    case "revoked":
      where.push(isNotNull(tokens.revokedAt));
      break;
    case "expired":
      where.push(isNull(tokens.revokedAt), lte(tokens.expiresAt, sql`now()`));
      break;
    case "exhausted":
      where.push(isNull(tokens.revokedAt), gt(tokens.expiresAt, sql`now()`), isNotNull(tokens.maxCalls), sql`${tokens.used} >= ${tokens.maxCalls}`);
      break;
    case "active":
      where.push(isNull(tokens.revokedAt), gt(tokens.expiresAt, sql`now()`), or(isNull(tokens.maxCalls), lt(tokens.used, tokens.maxCalls)));
      break;
  }
  if (after) {
    where.push(or(lt(tokens.createdAt, after.createdAt), and(eq(tokens.createdAt, after.createdAt), lt(tokens.id, after.id))));
  }
  return db
    .select()
    .from(tokens)
    .where(and(...where))
    .orderBy(desc(tokens.createdAt), desc(tokens.id))
    .limit(limit);
}

/** Revokes a sealed token that was never used: its row is inserted already revoked. */
export async function insertRevokedSealed(db: Db, id: string, expiresAt: Date): Promise<TokenRow | undefined> {
  const [row] = await db
    .insert(tokens)
    .values({ id, kind: 2, provider: "", expiresAt, revokedAt: sql`now()` })
    .onConflictDoUpdate({ target: tokens.id, set: { revokedAt: sql`coalesce(${tokens.revokedAt}, now())` } })
    .returning();
  return row;
}
