/**
 * The issued token format (DESIGN 3.1): `rai_` + 32 base62 random characters + 6 base62
 * characters of the CRC32 of the random part. The checksum lets secret scanners recognise a
 * token and lets the relay drop a mistyped one without a database read. Only the SHA-256 of
 * the whole secret is stored.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { BASE62 as ALPHABET, randomBase62 } from "../random-base62.js";
export const ISSUED_PREFIX = "rai_";
const RANDOM_LEN = 32;
const CHECK_LEN = 6;
export const ISSUED_TOKEN_LENGTH = ISSUED_PREFIX.length + RANDOM_LEN + CHECK_LEN;
const SHAPE = /^rai_[0-9A-Za-z]{38}$/;

function base62Fixed(n: number, width: number): string {
  let out = "";
  for (let i = 0; i < width; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

function checksum(randomPart: string): string {
  return base62Fixed(crc32(randomPart), CHECK_LEN);
}

export function newIssuedSecret(): string {
  const random = randomBase62(RANDOM_LEN);
  return ISSUED_PREFIX + random + checksum(random);
}

/** True when the string has the issued shape and a valid checksum. */
export function isWellFormedIssued(secret: string): boolean {
  if (secret.length !== ISSUED_TOKEN_LENGTH || !SHAPE.test(secret)) return false;
  const random = secret.slice(ISSUED_PREFIX.length, ISSUED_PREFIX.length + RANDOM_LEN);
  return checksum(random) === secret.slice(ISSUED_PREFIX.length + RANDOM_LEN);
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

export function newTokenId(): string {
  return "tok_" + randomBase62(20);
}
