/** Queries on `issuers`, `issuer_keys` and `relay_keys`. */
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "../client.js";
import { issuerKeys, issuers, relayKeys, type IssuerKeyRow, type IssuerRow, type RelayKeyRow } from "../schema/index.js";

export interface IssuerWithKeys extends IssuerRow {
  keys: IssuerKeyRow[];
}

/** Creates the issuer and its first key; false when the name is taken. */
export async function createIssuer(db: Db, name: string, key: { kid: string; secretEnc: string }): Promise<boolean> {
  return db.transaction(async (tx) => {
    const created = await tx.insert(issuers).values({ name }).onConflictDoNothing().returning({ name: issuers.name });
    if (created.length === 0) return false;
    await tx.insert(issuerKeys).values({ kid: key.kid, issuer: name, secretEnc: key.secretEnc });
    return true;
  });
}

/** Adds a key to an enabled issuer; false when there is no such enabled issuer. */
export async function addIssuerKey(db: Db, name: string, key: { kid: string; secretEnc: string }): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [issuer] = await tx
      .select()
      .from(issuers)
      .where(and(eq(issuers.name, name), isNull(issuers.disabledAt)));
    if (!issuer) return false;
    await tx.insert(issuerKeys).values({ kid: key.kid, issuer: name, secretEnc: key.secretEnc });
    return true;
  });
}

/** Disables one key, or the issuer and all its keys; false when nothing matched. */
export async function disableIssuer(db: Db, name: string, kid?: string): Promise<boolean> {
  if (kid) {
    const rows = await db
      .update(issuerKeys)
      .set({ disabledAt: sql`coalesce(${issuerKeys.disabledAt}, now())` })
      .where(and(eq(issuerKeys.issuer, name), eq(issuerKeys.kid, kid)))
      .returning({ kid: issuerKeys.kid });
    return rows.length > 0;
  }
  return db.transaction(async (tx) => {
    const rows = await tx
      .update(issuers)
      .set({ disabledAt: sql`coalesce(${issuers.disabledAt}, now())` })
      .where(eq(issuers.name, name))
      .returning({ name: issuers.name });
    if (rows.length === 0) return false;
    await tx
      .update(issuerKeys)
      .set({ disabledAt: sql`coalesce(${issuerKeys.disabledAt}, now())` })
      .where(eq(issuerKeys.issuer, name));
    return true;
  });
}

export async function listIssuers(db: Db): Promise<IssuerWithKeys[]> {
  const [rows, keys] = await Promise.all([db.select().from(issuers).orderBy(issuers.name), db.select().from(issuerKeys).orderBy(desc(issuerKeys.createdAt))]);
  return rows.map((r) => ({ ...r, keys: keys.filter((k) => k.issuer === r.name) }));
}

/** Every key that is accepted now: the key and its issuer are enabled. */
export async function listActiveIssuerKeys(db: Db): Promise<IssuerKeyRow[]> {
  return db
    .select({
      kid: issuerKeys.kid,
      issuer: issuerKeys.issuer,
      secretEnc: issuerKeys.secretEnc,
      createdAt: issuerKeys.createdAt,
      disabledAt: issuerKeys.disabledAt,
    })
    .from(issuerKeys)
    .innerJoin(issuers, eq(issuers.name, issuerKeys.issuer))
    .where(and(isNull(issuerKeys.disabledAt), isNull(issuers.disabledAt)));
}

/** The relay's sealing key pair: the oldest row, so every instance agrees on one. */
export async function getRelayKey(db: Db): Promise<RelayKeyRow | undefined> {
  const [row] = await db.select().from(relayKeys).orderBy(relayKeys.createdAt, relayKeys.kid).limit(1);
  return row;
}

export async function insertRelayKey(db: Db, row: Omit<RelayKeyRow, "createdAt">): Promise<void> {
  await db.insert(relayKeys).values(row).onConflictDoNothing();
}
