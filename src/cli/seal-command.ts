/**
 * `relayapi token seal`: mints a sealed token offline (DESIGN 3.2), with no server, through the
 * same SDK functions app backends use: `alg: dir` under `--issuer-key <kid>:<secret>` (default
 * $RELAYAPI_ISSUER_KEY), or `alg: ECDH-ES` to the relay's public key with `--relay-key`.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { JWK } from "jose";
import { cliDefaults } from "../config.js";
import { newJti, sealToken, sealTokenForRelay, type SealInput } from "../sdk/seal-token.js";
import { durationFlag, parse, UsageError } from "./args.js";
import { sealClaims, TOKEN_FLAGS } from "./token-flags.js";

const FLAGS = {
  ...TOKEN_FLAGS,
  "issuer-key": { type: "string" },
  "relay-key": { type: "string" },
  jti: { type: "string" },
} as const;

const USAGE = "usage: relayapi token seal (--issuer-key <kid>:<secret> | --relay-key <jwk-or-file>) --provider <id> (--upstream-key K | --pool P) [...]";

export async function sealCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, FLAGS);
  if (positionals.length > 0) throw new UsageError(USAGE);
  if (!values.provider) throw new UsageError("--provider is required");
  const key = values["upstream-key"];
  const pool = values.pool;
  if ((key === undefined) === (pool === undefined)) throw new UsageError("give exactly one of --upstream-key and --pool");
  const relayKey = values["relay-key"];
  const issuerKey = values["issuer-key"] ?? (relayKey === undefined ? cliDefaults().issuerKey : undefined);
  if ((issuerKey === undefined) === (relayKey === undefined))
    throw new UsageError("give exactly one of --issuer-key (or $RELAYAPI_ISSUER_KEY) and --relay-key");
  if (relayKey !== undefined && pool !== undefined) throw new UsageError("an ECDH-ES token (--relay-key) may not name a pool: give --upstream-key");

  const ttlMs = durationFlag("expires-in", values["expires-in"]) ?? 3_600_000;
  const exp = Math.floor((Date.now() + ttlMs) / 1000);
  const claims: SealInput = { jti: values.jti ?? newJti(), exp, prv: values.provider };
  if (key !== undefined) claims.key = key;
  if (pool !== undefined) claims.pool = pool;
  if (values.subject !== undefined) claims.sub = values.subject;
  if (values.plan !== undefined) claims.pln = values.plan;
  sealClaims(values, claims);

  let token: string;
  let kid: string;
  try {
    if (relayKey !== undefined) {
      const jwk = readJwk(relayKey);
      kid = String(jwk.kid ?? "");
      token = await sealTokenForRelay(claims, jwk);
    } else {
      kid = issuerKey!.slice(0, Math.max(0, issuerKey!.lastIndexOf(":")));
      token = await sealToken(claims, issuerKey!);
    }
  } catch (e) {
    // The SDK's checks are about the flags given: misuse, one line, exit 2.
    if (e instanceof TypeError) throw new UsageError(e.message);
    throw e;
  }
  if (!values.json) {
    console.log(token);
    return;
  }
  // The claims as sealed, so a script can check its limits; never the upstream key.
  const { key: _key, ...shown } = claims;
  const out: Record<string, unknown> = {
    token,
    jti: claims.jti,
    kid,
    alg: relayKey === undefined ? "dir" : "ECDH-ES",
    expiresAt: new Date(exp * 1000).toISOString(),
    claims: shown,
  };
  // An ECDH-ES token's id is known offline (an issuer token's is `<issuer name>:<jti>`).
  if (relayKey !== undefined) out.id = `byok-${createHash("sha256").update(key!).digest("hex").slice(0, 16)}:${claims.jti}`;
  console.log(JSON.stringify(out));
}

/** `--relay-key` is the JWK itself (`relayapi pubkey` output) or a file holding it. */
function readJwk(raw: string): JWK {
  let text = raw.trim();
  if (!text.startsWith("{")) {
    try {
      text = readFileSync(raw, "utf8");
    } catch {
      throw new UsageError("--relay-key must be a JWK (JSON) or a file holding one");
    }
  }
  try {
    const jwk = JSON.parse(text) as unknown;
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new Error("not an object");
    return jwk as JWK;
  } catch {
    throw new UsageError("--relay-key is not valid JSON");
  }
}
