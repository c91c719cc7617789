/**
 * Sealed tokens (DESIGN 3.2): a compact JWE minted offline, either `alg: dir` under an
 * issuer's 256-bit key (`kid`) or `alg: ECDH-ES` (X25519) to the relay's public key. Only
 * `enc: A256GCM`. Claims: `jti` and `exp` required; `prv` provider; `key` inline upstream key
 * or `pool`; `max`, `mdl`, `pth`, `org`, `mbb`, `tls` limits; `sub`, `nbf`, `iat`.
 *
 * Every failure is the same fixed 401 (`invalidToken()`): nothing about why, nothing from the
 * token. Claims this relay cannot enforce yet (`rpm`, `mtk`, `mxn`, `bud`, `cnf`) make the
 * token fail closed rather than be accepted with a limit silently dropped.
 */
import { createHash } from "node:crypto";
import { jwtDecrypt, type JWTPayload } from "jose";
import { invalidToken, RelayError } from "../errors.js";
import { maskSecret } from "../keys/secret-box.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { IssuerKeyring } from "./issuer-keyring.js";
import { MAX_TTL_MS, validateLimits } from "./limits.js";
import type { RelayKey } from "./relay-key.js";
import type { TokenMeta } from "./token-meta.js";

export const TOKEN_KIND_SEALED = 2;
/** Tolerated clock difference between the minting backend and the relay, for exp/nbf/iat. */
export const CLOCK_SKEW_SECONDS = 60;
const JWE_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const JTI = /^[A-Za-z0-9._~:-]{1,128}$/;
const UNENFORCED = ["rpm", "mtk", "mxn", "bud", "cnf"] as const;

export function looksSealed(token: string): boolean {
  return JWE_SHAPE.test(token);
}

export interface SealedDeps {
  keyring: IssuerKeyring;
  providers: ProviderRegistry;
  /** Set only when the operator accepts ECDH-ES (bring-your-own-key) tokens. */
  relayKey: RelayKey | undefined;
}

/** Opens and checks a sealed token; any failure is the fixed 401. */
export async function openSealedToken(token: string, deps: SealedDeps): Promise<TokenMeta> {
  let scope = "";
  let kid = "";
  let payload: JWTPayload;
  try {
    const result = await jwtDecrypt(
      token,
      (header) => {
        if (header.enc !== "A256GCM" || typeof header.kid !== "string") throw invalidToken();
        kid = header.kid;
        if (header.alg === "dir") {
          const key = deps.keyring.get(header.kid);
          if (!key) throw invalidToken();
          scope = key.issuer;
          return key.key;
        }
        if (header.alg === "ECDH-ES" && deps.relayKey && header.kid === deps.relayKey.kid) return deps.relayKey.privateKey;
        throw invalidToken();
      },
      {
        keyManagementAlgorithms: ["dir", "ECDH-ES"],
        contentEncryptionAlgorithms: ["A256GCM"],
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ["jti", "exp"],
      },
    );
    payload = result.payload;
  } catch {
    throw invalidToken();
  }
  try {
    return claimsToMeta(payload, scope, kid, deps.providers);
  } catch {
    throw invalidToken();
  }
}

function claimsToMeta(c: JWTPayload, issuer: string, kid: string, providers: ProviderRegistry): TokenMeta {
  const jti = c.jti;
  const exp = c.exp;
  if (typeof jti !== "string" || !JTI.test(jti) || typeof exp !== "number") throw bad();
  if (exp * 1000 - Date.now() > MAX_TTL_MS) throw bad();
  for (const name of UNENFORCED) if (c[name] !== undefined) throw bad();
  const provider = c.prv;
  if (typeof provider !== "string" || !providers.get(provider)) throw bad();
  const key = optional(c.key, "string");
  const pool = optional(c.pool, "string");
  // Pools arrive with key pools; an ECDH-ES token may never name one (DESIGN 3.2).
  if (key === undefined || pool !== undefined) throw bad();
  const limits = {
    subject: optional(c.sub, "string") ?? "",
    upstreamKey: key,
    maxCalls: optional(c.max, "number"),
    models: optional(c.mdl, "object") ?? [],
    paths: optional(c.pth, "object") ?? [],
    origins: optional(c.org, "object") ?? [],
    maxBodyBytes: optional(c.mbb, "number"),
  };
  validateLimits(limits as typeof limits & { models: string[]; paths: string[]; origins: string[] });
  optional(c.tls, "boolean");
  // ECDH-ES tokens are scoped by their key's hash: one key's holder cannot touch another's jti.
  const scope = issuer || "byok-" + createHash("sha256").update(key).digest("hex").slice(0, 16);
  const id = `${scope}:${jti}`;
  const models = limits.models as string[];
  const paths = limits.paths as string[];
  const origins = limits.origins as string[];
  const expiresAt = new Date(exp * 1000);
  return {
    id,
    kind: TOKEN_KIND_SEALED,
    provider,
    subject: limits.subject,
    upstreamKey: key,
    pool: undefined,
    maxCalls: limits.maxCalls ?? null,
    models: new Set(models),
    paths,
    origins: new Set(origins),
    maxBodyBytes: limits.maxBodyBytes ?? null,
    expiresAtMs: expiresAt.getTime(),
    sealed: {
      kid,
      firstRow: {
        id,
        kind: TOKEN_KIND_SEALED,
        provider,
        subject: limits.subject,
        upstreamKeyHint: maskSecret(key),
        maxCalls: limits.maxCalls ?? null,
        models,
        paths,
        origins,
        maxBodyBytes: limits.maxBodyBytes ?? null,
        toolsAllowed: c.tls === true,
        expiresAt,
      },
    },
  };
}

function optional(v: unknown, type: "string"): string | undefined;
function optional(v: unknown, type: "number"): number | undefined;
function optional(v: unknown, type: "boolean"): boolean | undefined;
function optional(v: unknown, type: "object"): unknown[] | undefined;
function optional(v: unknown, type: string): unknown {
  if (v === undefined) return undefined;
  if (type === "object" ? !Array.isArray(v) : typeof v !== type) throw bad();
  return v;
}

function bad(): RelayError {
  return new RelayError("unauthenticated", "bad claims");
}
