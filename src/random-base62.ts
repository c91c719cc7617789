/**
 * Random identifiers in base62 (0-9, A-Z, a-z) from the CSPRNG: token secrets (src/tokens/),
 * key and pool ids (src/keys/). At the bottom of the tree, so neither imports the other for it.
 */
import { randomInt } from "node:crypto";

export const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

export function randomBase62(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += BASE62[randomInt(62)];
  return out;
}
