/**
 * Minting an issued token (DESIGN 3.1): validate the request, store the SHA-256 of a fresh
 * secret with the limits and the encrypted upstream key, and hand the secret out once.
 */
import type { Db } from "../db/client.js";
import { insertToken } from "../db/queries/tokens.js";
import type { TokenRow } from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import { maskSecret, type SecretBox } from "../keys/secret-box.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { hashSecret, newIssuedSecret, newTokenId } from "./issued-token.js";

export const TOKEN_KIND_ISSUED = 1;
const MAX_TTL_MS = 366 * 24 * 3600 * 1000;
export const DEFAULT_TTL_MS = 3600 * 1000;
const MAX_LIST = 100;

export interface IssueInput {
  provider: string;
  upstreamKey: string | undefined;
  pool: string | undefined;
  subject: string;
  maxCalls: number | undefined;
  models: string[];
  paths: string[];
  origins: string[];
  maxBodyBytes: number | undefined;
  expiresAt: Date;
}

export interface Issued {
  secret: string;
  row: TokenRow;
}

export async function issueToken(db: Db, box: SecretBox, providers: ProviderRegistry, input: IssueInput): Promise<Issued> {
  if (!providers.get(input.provider)) throw new RelayError("bad_request", "unknown provider");
  if (input.pool !== undefined) throw new RelayError("failed_precondition", "key pools are not available yet");
  const key = input.upstreamKey;
  if (key === undefined || key.length === 0 || key.length > 4096 || /[\0-\x1f\x7f\s]/.test(key)) {
    throw new RelayError("bad_request", "upstream_key must be 1-4096 printable characters without spaces");
  }
  const ttl = input.expiresAt.getTime() - Date.now();
  if (!(ttl > 0) || ttl > MAX_TTL_MS) throw new RelayError("bad_request", "expiry must be in the future and within 366 days");
  if (input.maxCalls !== undefined && (!Number.isSafeInteger(input.maxCalls) || input.maxCalls < 1)) {
    throw new RelayError("bad_request", "max_calls must be at least 1");
  }
  if (input.maxBodyBytes !== undefined && input.maxBodyBytes < 1) throw new RelayError("bad_request", "max_body_bytes must be positive");
  if (input.subject.length > 256) throw new RelayError("bad_request", "subject is at most 256 characters");
  checkList("models", input.models, (m) => m.length <= 256 && !/[\0-\x1f]/.test(m));
  checkList("paths", input.paths, (p) => /^\/[A-Za-z0-9\-._~/:]{0,255}$/.test(p) && !p.includes(".."));
  checkList("origins", input.origins, isOrigin);

  const id = newTokenId();
  const secret = newIssuedSecret();
  const row = await insertToken(db, {
    id,
    kind: TOKEN_KIND_ISSUED,
    secretHash: hashSecret(secret),
    provider: input.provider,
    subject: input.subject,
    upstreamKeyEnc: box.seal(key, id),
    upstreamKeyHint: maskSecret(key),
    maxCalls: input.maxCalls ?? null,
    models: input.models,
    paths: input.paths,
    origins: input.origins,
    maxBodyBytes: input.maxBodyBytes ?? null,
    expiresAt: input.expiresAt,
  });
  return { secret, row };
}

function checkList(name: string, list: string[], ok: (v: string) => boolean): void {
  if (list.length > MAX_LIST) throw new RelayError("bad_request", `${name}: at most ${MAX_LIST} entries`);
  for (const v of list) if (!ok(v)) throw new RelayError("bad_request", `${name}: invalid entry`);
}

function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === "https:" || u.protocol === "http:") && u.origin === v;
  } catch {
    return false;
  }
}
