/**
 * Sending one call, with failover across a pool's keys (DESIGN 8, issue 17). A call moves to
 * another key only on answers where the provider did no work: a connection that never carried
 * a byte, a 429, a 401. Never on a 5xx, nor on a timeout or reset after the request was
 * written; a 403 goes back to the client too. At most `attempts` provider attempts, all before
 * anything reached the client, and none after RETRY_WINDOW_MS.
 *
 * What an answer says about its key goes to the PoolRegistry: a 401, or an error body the
 * provider's shape reads as "invalid key", is a strike; a 403 or 429 rests the key for the
 * call's model; a good answer clears strikes. Each 401/403/429 is charged to the token's key
 * error budget, and a token past it gets no further attempts. Every pooled attempt is listed
 * in `attempts` (`key_id:status`, `connect` when nothing was sent) when there was more than one.
 *
 * `SendFailed.reached` is true when any attempt may have put a byte before a provider: the
 * caller refunds the call only when it is false (DESIGN 3.3).
 */
import { RelayError, toRelayError } from "../errors.js";
import type { Limits } from "../limits/limits.js";
import type { PoolKey, PoolRegistry } from "../keys/pool-registry.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { ReadInput } from "./types.js";
import { upstreamHeaders } from "./headers.js";
import { ClientGone, UpstreamFailed, type UpstreamBody, type UpstreamClient, type UpstreamResponse } from "./upstream-client.js";
import { upstreamTarget } from "./upstream-url.js";

const RETRY_WINDOW_MS = 30_000;
/** A 403/429's rest when it gives no Retry-After (the registry caps every rest). */
const DEFAULT_REST_MS = 30_000;
/** Error bodies longer than this are not read for an "invalid key" verdict. */
const MAX_JUDGED_BODY = 16 * 1024;

export interface FailoverDeps {
  upstream: UpstreamClient;
  pools: PoolRegistry;
  limits: Limits;
  /** Provider attempts per call at most (config upstreamAttempts). */
  attempts: number;
}

export interface Sent {
  res: UpstreamResponse;
  keyId: string | undefined;
  /** The upstream key this answer was sent with, so an error answer echoing it can be redacted. */
  key: string;
  /** Every pooled attempt, `key_id:status` joined by commas, when there was more than one. */
  attempts: string | undefined;
  /** Frees the key's concurrency slot once the answer has been streamed. */
  release: () => void;
}

const noRelease = (): void => {};

/** Thrown when no attempt got an answer; `reached` says whether any provider may have seen the call. */
export class SendFailed extends Error {
  override name = "SendFailed";
  constructor(
    readonly error: RelayError,
    readonly reached: boolean,
    /** The pool key of the last attempt, if any. */
    readonly keyId?: string,
    readonly attempts?: string,
  ) {
    super(error.message);
  }
}

/** What a call without a pool passes for its tried keys and trail: never written to. */
const NONE_TRIED: Set<string> = new Set();
const NO_TRAIL: string[] = [];

export async function sendWithFailover(
  deps: FailoverDeps,
  token: TokenMeta,
  provider: ProviderSpec,
  model: string | undefined,
  input: ReadInput,
): Promise<Sent> {
  const { upstream, pools, limits } = deps;
  const started = Date.now();
  // Kept only for a pool's keys: a token's own key is tried once (no Set or list per call).
  const tried = token.pool === undefined ? NONE_TRIED : new Set<string>();
  const trail: string[] = token.pool === undefined ? NO_TRAIL : [];
  let reached = false;
  let lastError: RelayError | undefined;
  let lastKey: string | undefined;
  for (let attempt = 0; attempt < deps.attempts && Date.now() - started < RETRY_WINDOW_MS; attempt++) {
    const pooled = token.pool !== undefined ? pools.pick(token.pool, tried, model) : undefined;
    const key = pooled?.key ?? (attempt === 0 ? token.upstreamKey : undefined);
    if (key === undefined) {
      // Nothing tried, and every key that could serve rests for this model: say when to come back.
      const rest = token.pool !== undefined && lastError === undefined ? pools.restLeft(token.pool, tried, model) : 0;
      if (rest > 0) lastError = new RelayError("rate_limited", "every upstream key is resting for this model", { retryAfter: Math.ceil(rest / 1000) });
      break;
    }
    let release = noRelease;
    if (pooled) {
      tried.add(pooled.id);
      try {
        release = limits.acquireKey(pooled.id);
      } catch (e) {
        lastError = toRelayError(e); // this key is busy: try the next one
        continue;
      }
      lastKey = pooled.id;
    }
    let res: UpstreamResponse;
    try {
      res = await upstream.send(
        upstreamTarget(provider, input.path, input.query, key),
        input.method,
        upstreamHeaders(input.headers, provider, key),
        input.upload ?? input.body,
        input.signal,
      );
    } catch (e) {
      release();
      if (e instanceof ClientGone) throw e;
      // Anything but UpstreamFailed came from building the request: nothing was sent.
      const sent = e instanceof UpstreamFailed && e.sent;
      lastError = toRelayError(e);
      reached ||= sent;
      if (pooled) trail.push(`${pooled.id}:${sent ? lastError.status : "connect"}`);
      // Only a connection that never carried a byte moves on; a request that could not be
      // built or written fails alike on every key.
      if (sent || lastError.code !== "upstream_unreachable") break;
      continue;
    }
    reached = true;
    if (!pooled) return { res, keyId: undefined, key, attempts: undefined, release };
    trail.push(`${pooled.id}:${res.statusCode}`);
    const answer = await judge(pools, pooled, token.id, provider, model, res);
    const another =
      (res.statusCode === 401 || res.statusCode === 429) &&
      attempt + 1 < deps.attempts &&
      Date.now() - started < RETRY_WINDOW_MS &&
      pools.keyErrors.allows(token.id) &&
      // A streamed body went (in part) to the refused attempt: it cannot be sent again.
      input.upload?.replayable !== false &&
      pools.hasUsable(pooled.pool, tried, model);
    if (!another) return { res: answer, keyId: pooled.id, key, attempts: listed(trail), release };
    release();
    // Discard the refused answer (small: an error body) so the connection can be reused.
    await res.body.dump().catch(() => {});
  }
  throw new SendFailed(lastError ?? new RelayError("unavailable", "no upstream key available"), reached, lastKey, listed(trail));
}

/** The attempts for the usage log: only when there was more than one. */
function listed(trail: readonly string[]): string | undefined {
  return trail.length > 1 ? trail.join(",") : undefined;
}

/**
 * Tells the registry what a pool key's answer says about the key, and charges key errors to the
 * token. Returns the response to use: for a 4xx the provider's shape may read as "invalid key",
 * its body is watched on its way to the client.
 */
async function judge(
  pools: PoolRegistry,
  key: PoolKey,
  tokenId: string,
  provider: ProviderSpec,
  model: string | undefined,
  res: UpstreamResponse,
): Promise<UpstreamResponse> {
  const status = res.statusCode;
  if (status < 400) {
    pools.succeeded(key);
    return res;
  }
  const keyError = status === 401 || status === 403 || status === 429;
  if (keyError) pools.keyErrors.charge(tokenId);
  if (status === 401) {
    // Health bookkeeping never fails the call; the next reload corrects the state.
    await pools.strike(key, "upstream answered 401").catch(() => {});
    return res;
  }
  if (status === 403 || status === 429) pools.rest(key, model, restMs(res.headers["retry-after"]), status);
  const keyInvalid = provider.shape.keyInvalid;
  if (status >= 500 || status === 429 || !keyInvalid) return res;
  const body = watchBody(res.body, (bytes) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString("utf8"));
    } catch {
      return;
    }
    if (!keyInvalid(parsed)) return;
    if (!keyError) pools.keyErrors.charge(tokenId);
    pools.strike(key, `upstream answered ${status}: invalid key`).catch(() => {});
  });
  return { ...res, body };
}

/** The same body, whose bytes (when it ends whole, within MAX_JUDGED_BODY) are also given to `done`. */
function watchBody(body: UpstreamBody, done: (bytes: Buffer) => void): UpstreamBody {
  const chunks: Buffer[] = [];
  let size = 0;
  return {
    pipe: (write) =>
      body
        .pipe((chunk) => {
          size += chunk.length;
          if (size <= MAX_JUDGED_BODY) chunks.push(chunk);
          return write(chunk);
        })
        .then(() => {
          if (size > MAX_JUDGED_BODY) return;
          try {
            done(Buffer.concat(chunks));
          } catch {
            // A verdict on the key never breaks the answer it came with.
          }
        }),
    destroy: (err) => body.destroy(err),
    dump: (limit) => body.dump(limit),
  };
}

/** `Retry-After` in seconds or as an HTTP date (RFC 9110 10.2.3); else the default. The registry caps it. */
function restMs(header: string | string[] | undefined): number {
  const raw = Array.isArray(header) ? header[0] : header;
  if (!raw) return DEFAULT_REST_MS;
  const seconds = Number(raw);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(raw) - Date.now();
  return Number.isFinite(ms) ? ms : DEFAULT_REST_MS;
}
