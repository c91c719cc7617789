/**
 * Queries on `settings` (one row per fact about the database), and the one read the master key
 * check needs beside it: any secret stored under the master key.
 */
import { eq, isNotNull } from "drizzle-orm";
import type { Db } from "../client.js";
import { issuerKeys, relayKeys, settings, tokens, upstreamKeys } from "../schema/index.js";

export async function getSetting(db: Db, name: string): Promise<string | undefined> {
  const [row] = await db.select({ value: settings.value }).from(settings).where(eq(settings.name, name));
  return row?.value;
}

/** Writes the setting unless it exists (the first instance to start wins); returns what is stored. */
export async function putSettingOnce(db: Db, name: string, value: string): Promise<string | undefined> {
  await db.insert(settings).values({ name, value }).onConflictDoNothing({ target: settings.name });
  return getSetting(db, name);
}

/** A sealed secret (SecretBox format) and the id it is bound to. */
export interface SealedSample {
  sealed: string;
  boundTo: string;
}

/** One secret encrypted under the master key, from any table holding them; none in a new database. */
export async function anySealedSecret(db: Db): Promise<SealedSample | undefined> {
  const reads = [
    () => db.select({ sealed: relayKeys.privateEnc, boundTo: relayKeys.kid }).from(relayKeys).limit(1),
    () => db.select({ sealed: issuerKeys.secretEnc, boundTo: issuerKeys.kid }).from(issuerKeys).limit(1),
    () => db.select({ sealed: upstreamKeys.keyEnc, boundTo: upstreamKeys.id }).from(upstreamKeys).limit(1),
    async () => {
      const rows = await db.select({ sealed: tokens.upstreamKeyEnc, boundTo: tokens.id }).from(tokens).where(isNotNull(tokens.upstreamKeyEnc)).limit(1);
      return rows.flatMap((r) => (r.sealed === null ? [] : [{ sealed: r.sealed, boundTo: r.boundTo }]));
    },
  ];
  for (const read of reads) {
    const [row] = await read();
    if (row) return row;
  }
  return undefined;
}
