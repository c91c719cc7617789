/**
 * Keys the embedded default generates for itself: the admin key and the master key, each in
 * the data directory with mode 0600, created once. Explicit configuration always wins.
 */
import { randomBytes, createHash, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface KeyFile {
  value: string;
  /** Set when this call created the file (so its path can be printed once). */
  createdAt?: string;
}

function loadOrCreate(dataDir: string, name: string, make: () => string): KeyFile {
  const path = join(dataDir, name);
  if (existsSync(path)) return { value: readFileSync(path, "utf8").trim() };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const value = make();
  // Written aside and linked into place: two instances starting at once on a new directory
  // (allowed with DATABASE_URL) agree on one key, and neither ever reads a half-written file.
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, value + "\n", { mode: 0o600, flag: "wx" });
  try {
    chmodSync(tmp, 0o600);
    linkSync(tmp, path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    if (code === "EEXIST") return { value: readFileSync(path, "utf8").trim() };
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"].includes(code)) throw e;
    writeFileSync(path, value + "\n", { mode: 0o600, flag: "wx" }); // no hard links here
  } finally {
    unlinkSync(tmp);
  }
  return { value, createdAt: path };
}

export function loadAdminKey(configured: string | undefined, dataDir: string): KeyFile {
  if (configured) return { value: configured };
  return loadOrCreate(dataDir, "admin.key", () => "rak_" + randomBytes(32).toString("base64url"));
}

export function loadMasterKey(configured: string | undefined, dataDir: string): Buffer {
  const text = configured ?? loadOrCreate(dataDir, "master.key", () => randomBytes(32).toString("base64url")).value;
  const key = decodeKey(text);
  if (key.length !== 32) throw new Error("the master key must be 32 bytes (base64, base64url or hex)");
  return key;
}

function decodeKey(text: string): Buffer {
  if (/^[0-9a-f]{64}$/i.test(text)) return Buffer.from(text, "hex");
  return Buffer.from(text, "base64url");
}

/** Constant-time comparison of two secrets of any length (both are hashed first). */
export function secretsEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}
