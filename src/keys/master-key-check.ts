/**
 * Refuses to start with another master key than the one the database was written with (issue
 * 17, finding 8; DESIGN 8). Without it such an instance started, then failed on its first
 * decryption with "Unsupported state or unable to authenticate data".
 *
 * The database keeps the key's check value (SecretBox.checkValue, a MAC, never the key) in
 * `settings`. The first start writes it; a database from before the check gets it only once
 * this key opens a secret already stored, so a wrong key is never recorded as the right one.
 */
import type { Db } from "../db/client.js";
import { anySealedSecret, getSetting, putSettingOnce } from "../db/queries/settings.js";
import { secretsEqual } from "./key-files.js";
import type { SecretBox } from "./secret-box.js";

export const MASTER_KEY_CHECK = "master_key_check";

export class MasterKeyMismatchError extends Error {
  override name = "MasterKeyMismatchError";
}

/**
 * Throws MasterKeyMismatchError unless `box` holds the database's master key. `source` says
 * where this instance read its key, for the message.
 */
export async function checkMasterKey(db: Db, box: SecretBox, source: string): Promise<"matched" | "recorded"> {
  const mine = box.checkValue;
  const stored = await getSetting(db, MASTER_KEY_CHECK);
  if (stored !== undefined) {
    if (!secretsEqual(stored, mine)) throw mismatch(source);
    return "matched";
  }
  const sample = await anySealedSecret(db);
  if (sample) {
    try {
      box.open(sample.sealed, sample.boundTo);
    } catch {
      throw mismatch(source);
    }
  }
  // Another instance starting at the same moment may have written its own value first.
  const now = await putSettingOnce(db, MASTER_KEY_CHECK, mine);
  if (now === undefined || !secretsEqual(now, mine)) throw mismatch(source);
  return "recorded";
}

function mismatch(source: string): MasterKeyMismatchError {
  return new MasterKeyMismatchError(
    `the master key (from ${source}) differs from the one this database was created with; ` +
      `start every instance with that same key, in RELAYAPI_MASTER_KEY or in the data directory's master.key`,
  );
}
