/**
 * The relay's X25519 key pair for ECDH-ES sealed tokens (DESIGN 3.2): anyone holding the public
 * JWK can seal a token that carries their own upstream key. Made once and kept in the database
 * (private half encrypted under the master key), so every instance opens the same tokens.
 */
import { exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { Db } from "../db/client.js";
import { getRelayKey, insertRelayKey } from "../db/queries/issuers.js";
import type { SecretBox } from "../keys/secret-box.js";
import { randomBase62 } from "../random-base62.js";

export interface RelayKey {
  kid: string;
  privateKey: CryptoKey | Uint8Array;
  /** Public JWK with `kid`, `alg: ECDH-ES`, `use: enc`. */
  publicJwk: JWK;
}

export async function loadRelayKey(db: Db, box: SecretBox): Promise<RelayKey> {
  let row = await getRelayKey(db);
  if (!row) {
    const pair = await generateKeyPair("ECDH-ES", { crv: "X25519", extractable: true });
    const kid = "relay_" + randomBase62(12);
    const publicJwk = { ...(await exportJWK(pair.publicKey)), kid, alg: "ECDH-ES", use: "enc" };
    const privateJwk = await exportJWK(pair.privateKey);
    await insertRelayKey(db, { kid, privateEnc: box.seal(JSON.stringify(privateJwk), kid), publicJwk: publicJwk as Record<string, unknown> });
    row = await getRelayKey(db);
    if (!row) throw new Error("relay key was not stored");
  }
  const privateJwk = JSON.parse(box.open(row.privateEnc, row.kid)) as JWK;
  return { kid: row.kid, privateKey: await importJWK(privateJwk, "ECDH-ES"), publicJwk: row.publicJwk as JWK };
}
