/**
 * `relayapi rai import <file.rai>`: turns an original RelayAPI client config into an issuer on
 * a running relay (DESIGN 3.2), so backends that hold the `.rai` keep their secret while they
 * move to sealed tokens. The `.rai` looks like
 * `{"version","server":{"host","port","base_path"},"crypto":{"method":"aes","aes_key":"<64 hex>","aes_iv_seed"}}`;
 * its `aes_key` (32 bytes) becomes the issuer's first key. The old token format (AES-CBC, no
 * integrity) is never accepted, and `aes_iv_seed` has no use: JWE draws a fresh nonce per token.
 */
import { readFileSync } from "node:fs";
import { basename, extname } from "node:path";
import { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import { parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";
import { printNewKey, serverFlags } from "./issuer-commands.js";

interface RaiFile {
  crypto?: { method?: unknown; aes_key?: unknown };
}

export async function raiCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub !== "import") throw new UsageError("usage: relayapi rai import <file.rai> [--name N]");
  const { values, positionals } = parse(rest, {
    server: { type: "string" },
    "admin-key": { type: "string" },
    json: { type: "boolean" },
    name: { type: "string" },
  });
  const file = positionals[0];
  if (!file || positionals.length > 1) throw new UsageError("usage: relayapi rai import <file.rai> [--name N]");
  const secret = readRaiKey(file);
  const name = values.name ?? issuerNameFor(file);
  const res = await serverClient(AdminService, serverFlags(values)).createIssuer({ name, secret });
  const issuer = res.issuer?.name ?? name;
  printNewKey(issuer, res.kid, res.secret, values.json === true);
  console.error(
    `relayapi: warning: issuer ${issuer}'s key is the .rai file's aes_key, known to every backend and server that holds the file. ` +
      `Once your backends seal tokens, run \`relayapi issuer rotate ${issuer}\`, move them to the new key, then \`relayapi issuer disable ${issuer} --kid ${res.kid}\`.`,
  );
}

/** The 32-byte `aes_key` of a `.rai` file; anything else is a one-line usage error. */
export function readRaiKey(file: string): Uint8Array {
  let rai: RaiFile;
  try {
    rai = JSON.parse(readFileSync(file, "utf8")) as RaiFile;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : "not JSON";
    throw new UsageError(`cannot read ${file}: ${why}`);
  }
  const crypto = rai?.crypto;
  if (typeof crypto !== "object" || crypto === null) throw new UsageError(`${file} has no "crypto" section: not a .rai file`);
  if (crypto.method !== "aes") throw new UsageError(`${file}: only "method": "aes" .rai files can be imported`);
  if (typeof crypto.aes_key !== "string" || !/^[0-9a-fA-F]{64}$/.test(crypto.aes_key)) {
    throw new UsageError(`${file}: "aes_key" must be 64 hex characters (32 bytes)`);
  }
  return Uint8Array.from(Buffer.from(crypto.aes_key, "hex"));
}

/** `Default.rai` -> `default`: the file name, lower-cased, other characters as `-`. */
export function issuerNameFor(file: string): string {
  const stem = basename(file, extname(file))
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "");
  return (stem || "rai").slice(0, 64);
}
