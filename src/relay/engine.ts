/**
 * The relay engine: the one code path behind both the HTTP layer (`/api/<provider>/*`) and
 * RelayService.Relay. It checks the token and its policy, counts the call, forwards it with
 * the real key and streams the answer into a sink, chunk for chunk.
 *
 * Before `sink.head` it throws RelayError (the caller renders it); after, it never throws: it
 * ends the sink with an outcome (COMPLETE, UPSTREAM_ERROR or TRUNCATED).
 */
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { invalidToken, RelayError, toRelayError } from "../errors.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import type { Limits } from "../limits/limits.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { Usage } from "../providers/types.js";
import type { TokenStore } from "../tokens/token-store.js";
import type { DpopGate } from "./dpop-gate.js";
import { clientHeaders } from "./headers.js";
import { SendFailed, sendWithFailover } from "./key-failover.js";
import { checkPolicy } from "./policy.js";
import { ClientGone, type UpstreamClient, type UpstreamResponse } from "./upstream-client.js";
import type { CallRecord, ReadInput, RelayInput, RelaySink } from "./types.js";
import { assertSafePath } from "./upstream-url.js";

export type { CallRecord, RelayEnd, RelayInput, RelaySink } from "./types.js";

export interface RelayEngineDeps {
  providers: ProviderRegistry;
  tokens: TokenStore;
  upstream: UpstreamClient;
  pools: PoolRegistry;
  limits: Limits;
  dpop: DpopGate;
  /** Called once per counted call, after it ended. */
  onCall?: (record: CallRecord) => void;
}

type Recorder = (status: number, outcome: Outcome, usage: Usage | undefined, bytes: number, keyId?: string) => void;

export class RelayEngine {
  constructor(private readonly deps: RelayEngineDeps) {}

  async relay(input: RelayInput, sink: RelaySink): Promise<void> {
    const started = performance.now();
    const { providers, tokens } = this.deps;
    const provider = providers.get(input.providerId);
    if (!provider) throw new RelayError("not_found", "unknown provider");
    if (input.token === undefined || input.token === "") throw invalidToken();
    const token = await tokens.authenticate(input.token);
    await this.deps.dpop.check(token, input.token, input.dpop);
    // The body is read only now, after the credentials: an unauthenticated client holds no memory.
    const read: ReadInput = { ...input, body: typeof input.body === "function" ? await input.body() : input.body };
    const { body, model } = checkPolicy(token, provider, read);
    const forwarded = body === read.body ? read : { ...read, body };
    if (token.upstreamKey === undefined && token.pool === undefined) {
      throw new RelayError("failed_precondition", "no upstream key for this token");
    }
    assertSafePath(input.path);
    tokens.checkBudget(token);
    if (token.rpm !== null) await this.deps.limits.checkToken(token.id, token.rpm);
    const release = await this.deps.limits.acquireGlobal();
    try {
      await this.#forward(token, provider, model, forwarded, sink, started);
    } finally {
      release();
    }
  }

  /** Counts the call, sends it (with failover across pool keys) and streams the answer. */
  async #forward(token: TokenMeta, provider: ProviderSpec, model: string | undefined, input: ReadInput, sink: RelaySink, started: number): Promise<void> {
    const { tokens, upstream, pools, limits } = this.deps;
    const { callsLeft } = await tokens.use(token);
    const sendAt = performance.now();
    let upstreamMs: number | undefined;
    const record: Recorder = (status, outcome, usage, bytes, keyId) => {
      if (usage) tokens.addUsage(token, usage.totalTokens);
      this.deps.onCall?.({
        tokenId: token.id,
        subject: token.subject,
        provider: provider.id,
        model,
        keyId,
        status,
        outcome,
        usage,
        bytes,
        latencyMs: performance.now() - started,
        overheadMs: sendAt - started,
        upstreamMs,
        requestId: input.requestId,
      });
    };

    let sent;
    try {
      sent = await sendWithFailover(upstream, pools, limits, token, provider, input);
      upstreamMs = performance.now() - sendAt;
    } catch (e) {
      if (e instanceof ClientGone) {
        // The request was sent; the provider may be working on it: not refunded.
        record(499, Outcome.TRUNCATED, undefined, 0);
        throw new RelayError("bad_request", "client closed the request");
      }
      const failed = e instanceof SendFailed ? e : new SendFailed(toRelayError(e), true);
      if (failed.reached) {
        record(failed.error.status, Outcome.UPSTREAM_ERROR, undefined, 0);
      } else {
        // Never reached the provider (connect error, timeout before headers): refunded.
        await tokens.refund(token).catch(() => {});
        record(failed.error.status, Outcome.REFUNDED, undefined, 0);
      }
      throw failed.error;
    }
    const { res, keyId, release } = sent;
    try {
      await this.#stream(res, keyId, provider, input, sink, callsLeft, record);
    } finally {
      release();
    }
  }

  async #stream(
    res: UpstreamResponse,
    keyId: string | undefined,
    provider: ProviderSpec,
    input: ReadInput,
    sink: RelaySink,
    callsLeft: number | null,
    record: Recorder,
  ): Promise<void> {
    const contentType = res.headers["content-type"];
    sink.head(res.statusCode, clientHeaders(res.headers), res.statusCode === 204 || res.statusCode === 304 ? undefined : bodyLengthOf(res.headers["content-length"], contentType));
    const meter = provider.shape.meter(typeof contentType === "string" ? contentType : undefined);
    let outcome = res.statusCode >= 400 ? Outcome.UPSTREAM_ERROR : Outcome.COMPLETE;
    let error: string | undefined;
    let bytes = 0;
    try {
      // Each chunk is metered and written as the socket delivers it (src/relay/upstream-client.ts).
      await res.body.pipe((chunk) => {
        bytes += chunk.length;
        meter.feed(chunk);
        return sink.write(chunk);
      });
    } catch (e) {
      outcome = Outcome.TRUNCATED;
      error = input.signal.aborted
        ? "client went away"
        : (e as { code?: string }).code === "UND_ERR_BODY_TIMEOUT"
          ? "upstream stalled"
          : "upstream stream interrupted";
      res.body.destroy();
    }
    if (outcome === Outcome.UPSTREAM_ERROR) error = "upstream returned an error";
    const usage = meter.result();
    record(res.statusCode, outcome, usage, bytes, keyId);
    await sink.end({ outcome, usage, callsLeft, error });
  }
}

/** A declared length the client may be given: a plain integer, never for an event stream. */
function bodyLengthOf(contentLength: string | string[] | undefined, contentType: string | string[] | undefined): number | undefined {
  if (typeof contentLength !== "string" || !/^\d{1,15}$/.test(contentLength)) return undefined;
  if (typeof contentType === "string" && contentType.includes("text/event-stream")) return undefined;
  return Number(contentLength);
}
