/**
 * Encryption at rest for upstream keys and issuer secrets: AES-256-GCM under the master key.
 * The row id is bound as additional data, so a ciphertext copied into another row fails.
 * Format: `v1.` + base64url(iv[12] | ciphertext | tag[16]).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";

export class SecretBox {
  readonly #key: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== 32) throw new Error("master key must be 32 bytes");
    this.#key = masterKey;
  }

  /** A key for deriving other secrets by HMAC (never the encryption key itself). */
  get derivationKey(): Buffer {
    return createHmac("sha256", this.#key).update("relayapi derivation key").digest();
  }

  /**
   * The master key's check value, kept in the database: a MAC of a fixed string under a key
   * derived from the master key. It shows whether two master keys are the same and reveals
   * nothing of either (src/keys/master-key-check.ts).
   */
  get checkValue(): string {
    return "v1." + createHmac("sha256", this.derivationKey).update("relayapi master key check").digest("base64url");
  }

  seal(plaintext: string, boundTo: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(boundTo));
    const ct = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return "v1." + Buffer.concat([iv, ct, cipher.getAuthTag()]).toString("base64url");
  }

  open(sealed: string, boundTo: string): string {
    if (!sealed.startsWith("v1.")) throw new Error("unknown ciphertext version");
    const raw = Buffer.from(sealed.slice(3), "base64url");
    if (raw.length < 28) throw new Error("ciphertext too short");
    const decipher = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(boundTo));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString("utf8");
  }
}

/** Shows the kind of key and its last four characters, never more: `sk-...abcd`. */
export function maskSecret(secret: string): string {
  if (secret.length <= 8) return "...";
  const dash = secret.indexOf("-");
  const prefix = dash > 0 && dash <= 8 ? secret.slice(0, dash + 1) : "";
  return `${prefix}...${secret.slice(-4)}`;
}
