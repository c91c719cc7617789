/**
 * Sending one call with failover across a pool's keys (DESIGN 8): connection errors and 5xx go
 * to the next key, a 429 rests the key for its `Retry-After`, a 401/403 disables it. Retries
 * happen only before anything reached the client, at most MAX_ATTEMPTS times and not after
 * RETRY_WINDOW_MS. When no other key is left, the provider's answer is passed through as is.
 * A call that never reached the provider is refunded by the caller (`reached` false).
 */
import { RelayError, toRelayError } from "../errors.js";
import type { Limits } from "../limits/limits.js";
import type { PoolKey, PoolRegistry } from "../keys/pool-registry.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { ReadInput } from "./types.js";
import { upstreamHeaders } from "./headers.js";
import { ClientGone, type UpstreamClient, type UpstreamResponse } from "./upstream-client.js";
import { upstreamUrl } from "./upstream-url.js";

export const MAX_ATTEMPTS = 3;
const RETRY_WINDOW_MS = 30_000;
const DEFAULT_COOLDOWN_MS = 30_000;
const MAX_COOLDOWN_MS = 3_600_000;

export interface Sent {
  res: UpstreamResponse;
  keyId: string | undefined;
  /** Frees the key's concurrency slot once the answer has been streamed. */
  release: () => void;
}

const noRelease = (): void => {};

/** Thrown when no attempt got an answer; `reached` says whether any provider saw the call. */
export class SendFailed extends Error {
  override name = "SendFailed";
  constructor(
    readonly error: RelayError,
    readonly reached: boolean,
  ) {
    super(error.message);
  }
}

export async function sendWithFailover(
  upstream: UpstreamClient,
  pools: PoolRegistry,
  limits: Limits,
  token: TokenMeta,
  provider: ProviderSpec,
  input: ReadInput,
): Promise<Sent> {
  const started = Date.now();
  const tried = new Set<string>();
  let reached = false;
  let lastError: RelayError | undefined;
  for (let attempt = 0; attempt < MAX_ATTEMPTS && Date.now() - started < RETRY_WINDOW_MS; attempt++) {
    const pooled = token.pool !== undefined ? pools.pick(token.pool, tried) : undefined;
    const key = pooled?.key ?? (attempt === 0 ? token.upstreamKey : undefined);
    if (key === undefined) break;
    let release = noRelease;
    if (pooled) {
      tried.add(pooled.id);
      try {
        release = await limits.acquireKey(pooled.id);
      } catch (e) {
        lastError = toRelayError(e); // this key is busy: try the next one
        continue;
      }
    }
    let res: UpstreamResponse;
    try {
      res = await upstream.send(
        upstreamUrl(provider, input.path, input.query, key),
        input.method,
        upstreamHeaders(input.headers, provider, key),
        input.body,
        input.signal,
      );
    } catch (e) {
      release();
      if (e instanceof ClientGone) throw e;
      lastError = e instanceof RelayError ? e : new RelayError("upstream_unreachable", "upstream unreachable");
      continue;
    }
    reached = true;
    if (!pooled || !retryable(res.statusCode)) return { res, keyId: pooled?.id, release };
    await markKey(pools, pooled, res);
    const another = attempt + 1 < MAX_ATTEMPTS && Date.now() - started < RETRY_WINDOW_MS && pools.hasUsable(pooled.pool, tried);
    if (!another) return { res, keyId: pooled.id, release };
    release();
    // Discard the refused answer (small: an error body) so the connection can be reused.
    await res.body.dump().catch(() => {});
  }
  throw new SendFailed(lastError ?? new RelayError("unavailable", "no upstream key available"), reached);
}

function retryable(status: number): boolean {
  return status === 429 || status === 401 || status === 403 || status >= 500;
}

async function markKey(pools: PoolRegistry, key: PoolKey, res: UpstreamResponse): Promise<void> {
  try {
    if (res.statusCode === 429) await pools.cooldown(key, Date.now() + cooldownMs(res.headers["retry-after"]));
    else if (res.statusCode === 401 || res.statusCode === 403) await pools.disable(key, `upstream answered ${res.statusCode}`);
  } catch {
    // Health bookkeeping must never fail the call; the next reload corrects the state.
  }
}

/** `Retry-After` in seconds or as an HTTP date (RFC 9110 10.2.3), clamped; else the default. */
export function cooldownMs(header: string | string[] | undefined): number {
  const raw = Array.isArray(header) ? header[0] : header;
  if (!raw) return DEFAULT_COOLDOWN_MS;
  const seconds = Number(raw);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(raw) - Date.now();
  if (!Number.isFinite(ms)) return DEFAULT_COOLDOWN_MS;
  return Math.min(MAX_COOLDOWN_MS, Math.max(1000, ms));
}
