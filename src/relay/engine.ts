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
import { onPaths, policyAt } from "../policy/shape-policy.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { Usage, UsageMeter } from "../providers/types.js";
import type { TokenStore } from "../tokens/token-store.js";
import type { DpopGate } from "./dpop-gate.js";
import { clientHeaders } from "./headers.js";
import { SendFailed, sendWithFailover } from "./key-failover.js";
import { checkPolicy, type Checked } from "./token-policy.js";
import { UploadBody, uploadKindOf } from "./upload-body.js";
import { checkUpload, DEFAULT_MAX_UPLOAD_BYTES, uploadOf } from "./upload-gate.js";
import { rewriteUploadUrls } from "./upload-url.js";
import type { AnswerFilter } from "./answer-filters.js";
import type { ObjectIdTapOpener, ObjectOwnership } from "./object-ownership.js";
import { BodyRedactor, redactHeaders } from "./redact.js";
import { ClientGone, type UpstreamClient, type UpstreamResponse } from "./upstream-client.js";
import type { CallRecord, ReadInput, RelayInput, RelaySink } from "./types.js";
import { decodeRequestBody } from "./request-body.js";
import { safePath } from "./upstream-url.js";
import { callBounds, callMaximum, chargeOf, namesRemoteInput, type CallEnd } from "../tokens/budget-reservations.js";
import type { CallCost } from "../tokens/call-charges.js";
import type { ModelPrice, Prices } from "../pricing/types.js";
import { Drain, DRAIN_CUT, onClientGone, SignalUntilAnswer } from "./usage-drain.js";

export type { CallRecord, RelayEnd, RelayInput, RelaySink } from "./types.js";

export interface RelayEngineDeps {
  providers: ProviderRegistry;
  tokens: TokenStore;
  upstream: UpstreamClient;
  pools: PoolRegistry;
  limits: Limits;
  dpop: DpopGate;
  /** Provider attempts per call at most, failovers included (config upstreamAttempts). */
  upstreamAttempts: number;
  /** Called once per counted call, after it ended. */
  onCall?: (record: CallRecord) => void;
  /** Largest request body, after its content coding is decoded (config maxBodyBytes). */
  maxBodyBytes?: number;
  /** Largest streamed upload (config maxUploadBytes; issue 25). */
  maxUploadBytes?: number;
  /** The origin clients reach the relay at, for upload URLs pointed back at it (config publicOrigin). */
  publicOrigin?: () => string;
  /** Stored responses and files reachable only by their creator's subject (issue 25). */
  ownership?: ObjectOwnership;
  /** Prices: each call's cost in its usage record, dollar budgets and plans (issue 24). */
  prices?: Prices;
}

/** Reports a counted call's end; resolves once its budget reservation (if any) is settled. */
type Recorder = (status: number, outcome: Outcome, usage: Usage | undefined, bytes: number, keyId: string | undefined, end: CallEnd) => Promise<void>;

const SETTLED = Promise.resolve();
const UNANSWERED: CallEnd = { kind: "unanswered" };
const REFUNDED: CallEnd = { kind: "refunded" };

/** A stream's `RelayEnd.error` when shutdown's grace deadline ended it (issue 19). */
export const RELAY_SHUTTING_DOWN = "relay shutting down";
/** Ends the upstream body of a stream still open at shutdown's grace deadline. */
const SHUTDOWN_CUT = new Error(RELAY_SHUTTING_DOWN);

export class RelayEngine {
  /** Upstream answers being streamed: `cutStreams` ends them at shutdown's deadline. */
  readonly #streaming = new Set<UpstreamResponse["body"]>();

  constructor(private readonly deps: RelayEngineDeps) {}

  /**
   * Shutdown's grace deadline: every answer still streaming ends as an upstream failure does,
   * through its sink with the provider-shaped error event and a TRUNCATED record keeping the
   * usage metered so far. Returns how many were cut.
   */
  cutStreams(): number {
    for (const body of this.#streaming) body.destroy(SHUTDOWN_CUT);
    return this.#streaming.size;
  }

  async relay(input: RelayInput, sink: RelaySink): Promise<void> {
    const started = performance.now();
    const { providers, tokens } = this.deps;
    const provider = providers.get(input.providerId);
    if (!provider) throw new RelayError("not_found", "unknown provider");
    // Before anything reads the path (the policy, the model in a Gemini path): one check and
    // one normal form for both entry points (src/relay/upstream-url.ts).
    const path = safePath(input.path);
    if (input.token === undefined || input.token === "") throw invalidToken();
    // Each step below that can answer at once does so without a promise (a cached token, no
    // DPoP binding, no upload, no content coding): a call awaits only what it waits for (issue 22).
    const authenticated = tokens.authenticate(input.token);
    // A plan's model list narrows the token's own pin (src/tokens/token-store.ts withPlan).
    const token = tokens.withPlan(authenticated instanceof Promise ? await authenticated : authenticated);
    const proof = this.deps.dpop.check(token, input.token, input.dpop);
    if (proof !== undefined) await proof;
    // The body is read only now, after the credentials: an unauthenticated client holds no memory.
    // Forms and binary bodies stream through unheld (issue 25, src/relay/upload-gate.ts).
    const stream = uploadKindOf(provider.shape, path, input.headers);
    const given = typeof input.body === "function" ? await input.body(stream && { stream }) : input.body;
    const opened = uploadOf(given, stream, input.headers, this.deps.maxBodyBytes ?? Infinity, input.holdDecoded);
    const raw = opened instanceof Promise ? await opened : opened;
    if (raw instanceof UploadBody) {
      try {
        const limit = Math.min(this.deps.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES, token.maxBodyBytes ?? Infinity);
        const checked = await checkUpload(token, provider, { path, origin: input.origin }, raw, limit).catch(raw.fail);
        await this.#admit(token, provider, checked, { ...input, path, body: checked.body, upload: raw }, sink, started);
        return;
      } finally {
        raw.release();
      }
    }
    // Decoded (Content-Encoding, a UTF-8 BOM) within the body limit: the policy reads, and the
    // provider gets, the same bytes (src/relay/request-body.ts).
    const limit = Math.min(this.deps.maxBodyBytes ?? Infinity, token.maxBodyBytes ?? Infinity);
    const decoding = decodeRequestBody(raw, input.headers, limit);
    const decoded = decoding instanceof Promise ? await decoding : decoding;
    if (decoded.length > raw.length) input.holdDecoded?.(decoded.length - raw.length);
    const read: ReadInput = { ...input, path, body: decoded };
    const checked = checkPolicy(token, provider, read, tokens.charged(token));
    await this.#admit(token, provider, checked, checked.body === read.body ? read : { ...read, body: checked.body }, sink, started);
  }

  /** Past the policy: the key, the budget's maximum, the rate limits, then the call. */
  async #admit(token: TokenMeta, provider: ProviderSpec, checked: Checked, forwarded: ReadInput, sink: RelaySink, started: number): Promise<void> {
    const { body, model } = checked;
    const { tokens } = this.deps;
    // Another subject's response or file: 404 before the call is counted. Awaited only when
    // there is an owner to look up: most calls name no object and take no extra turn.
    const owners = this.deps.ownership?.check(token, provider, forwarded);
    if (owners !== undefined) await owners;
    if (token.upstreamKey === undefined && token.pool === undefined) {
      throw new RelayError("failed_precondition", "no upstream key for this token");
    }
    // What the call may cost at most, in LLM tokens and dollars: reserved against the token's and
    // its plan's budgets (src/tokens/call-charges.ts), and its recorded cost when it has no usage.
    const price = this.deps.prices?.priceOf(provider.id, model);
    const charged = tokens.charged(token);
    const cost =
      price !== undefined || charged
        ? callCost(checked, body, charged ? policyAt(provider.shape.policy, forwarded.path).remoteInput : undefined, price)
        : undefined;
    const limited = token.rpm === null ? undefined : this.deps.limits.checkToken(token.id, token.rpm);
    if (limited !== undefined) await limited;
    const planRpm = token.plan === undefined ? null : (tokens.planOf(token)?.rpm ?? null);
    const planLimited = planRpm === null ? undefined : this.deps.limits.checkToken(`\0plan/${token.subject}`, planRpm);
    if (planLimited !== undefined) await planLimited;
    const release = this.deps.limits.acquireGlobal();
    try {
      await this.#forward(token, provider, model, forwarded, sink, started, cost, charged, checked.answer);
    } finally {
      release();
    }
  }

  /** Counts the call, sends it (with failover across pool keys) and streams the answer. */
  async #forward(
    token: TokenMeta,
    provider: ProviderSpec,
    model: string | undefined,
    input: ReadInput,
    sink: RelaySink,
    started: number,
    cost: CallCost | undefined,
    charged: boolean,
    answer?: AnswerFilter,
  ): Promise<void> {
    const { tokens, upstream, pools, limits, prices } = this.deps;
    // A token whose calls keep drawing key errors is refused before its call is counted (DESIGN 8).
    if (token.pool !== undefined) pools.keyErrors.admit(token.id);
    // From a lease this instance holds (most calls): counted at once, no promise.
    const using = tokens.use(token);
    const used = using instanceof Promise ? await using : using;
    const { callsLeft } = used;
    // Reserve, then settle: admitted only while every budget has room; refused, the call is given back.
    const reservation = charged && cost !== undefined ? await tokens.admitCharges(token, used, cost) : undefined;
    const sendAt = performance.now();
    let upstreamMs: number | undefined;
    let attempts: string | undefined;
    const record: Recorder = (status, outcome, usage, bytes, keyId, end) => {
      const settled = reservation?.settle(end) ?? SETTLED;
      this.deps.onCall?.({
        tokenId: token.id,
        subject: token.subject,
        plan: token.plan,
        // The cost the budgets were charged (src/tokens/budget-reservations.ts chargeOf): the
        // reported usage priced, or the call's maximum when it left without a usable report.
        costMicroUsd: cost?.price === undefined || prices === undefined ? undefined : costCharged(prices, cost, end),
        provider: provider.id,
        model,
        keyId,
        attempts,
        status,
        outcome,
        usage,
        bytes,
        latencyMs: performance.now() - started,
        overheadMs: sendAt - started,
        upstreamMs,
        requestId: input.requestId,
      });
      return settled;
    };

    let sent;
    // A budgeted call's upstream request follows the client only until the answer's head: after
    // that the answer is drained for its usage (src/relay/usage-drain.ts).
    const follow = reservation ? new SignalUntilAnswer(input.signal) : undefined;
    try {
      sent = await sendWithFailover(
        { upstream, pools, limits, attempts: this.deps.upstreamAttempts },
        token,
        provider,
        model,
        follow ? { ...input, signal: follow } : input,
      );
      upstreamMs = performance.now() - sendAt;
    } catch (e) {
      if (e instanceof ClientGone) {
        // The client left: whatever was sent stays counted.
        await record(499, Outcome.TRUNCATED, undefined, 0, undefined, UNANSWERED);
        throw new RelayError("bad_request", "client closed the request");
      }
      // Anything unforeseen counts as reached: a call is refunded only on proof (DESIGN 3.3).
      const failed = e instanceof SendFailed ? e : new SendFailed(toRelayError(e), true);
      attempts = failed.attempts;
      if (failed.reached) {
        // A byte may have reached a provider (a timeout or reset after the request was written).
        await record(failed.error.status, Outcome.UPSTREAM_ERROR, undefined, 0, failed.keyId, UNANSWERED);
      } else {
        // No byte left for any provider (connect, DNS or TLS failure, no key free): refunded.
        await tokens.refund(token, used).catch(() => {});
        await record(failed.error.status, Outcome.REFUNDED, undefined, 0, failed.keyId, REFUNDED);
      }
      throw failed.error;
    } finally {
      follow?.detach();
    }
    attempts = sent.attempts;
    const { res, keyId, release } = sent;
    this.#streaming.add(res.body);
    try {
      const owned = this.deps.ownership?.tap(token.subject, provider, input);
      await this.#stream(res, keyId, sent.key, provider, input, sink, callsLeft, record, reservation !== undefined, answer, owned);
    } finally {
      this.#streaming.delete(res.body);
      release();
    }
  }

  async #stream(
    res: UpstreamResponse,
    keyId: string | undefined,
    key: string,
    provider: ProviderSpec,
    input: ReadInput,
    sink: RelaySink,
    callsLeft: number | null,
    record: Recorder,
    drains: boolean,
    answer?: AnswerFilter,
    owned?: ObjectIdTapOpener,
  ): Promise<void> {
    const contentType = res.headers["content-type"];
    // An error answer may echo the key it was sent with: its headers and (bounded) body are
    // scanned and the key redacted, so its length may change and it goes unframed
    // (src/relay/redact.ts). Successful answers pass untouched.
    const redactor = res.statusCode >= 400 ? new BodyRedactor(key) : undefined;
    // A coded error body cannot be scanned, so it is not forwarded (identity was asked for).
    const coded = redactor !== undefined && isCoded(res.headers["content-encoding"]);
    const headers = redactor ? redactHeaders(clientHeaders(res.headers), key) : clientHeaders(res.headers);
    if (coded) delete headers["content-encoding"];
    // A resumable upload's URL names the provider: the client is sent back through the relay.
    if (provider.shape.uploads) rewriteUploadUrls(headers, provider, this.deps.publicOrigin?.());
    // The policy's rewrite of a successful answer (src/relay/answer-filters.ts): metered raw, forwarded rewritten.
    const filter =
      redactor === undefined && res.statusCode < 300 && answer?.accepts(typeof contentType === "string" ? contentType : undefined) ? answer : undefined;
    // A created object's id, recorded as the subject's as soon as it goes by (src/relay/object-ownership.ts).
    const ids = owned?.(res.statusCode, typeof contentType === "string" ? contentType : undefined);
    // A budgeted answer, or one that creates an object, goes unframed (chunked): it completes only
    // at sink.end, after its charge is settled and the object recorded, so a client's next call
    // never races them (finding the budget reserved, or its object unknown).
    sink.head(
      res.statusCode,
      headers,
      drains || ids || redactor || filter || res.statusCode === 204 || res.statusCode === 304
        ? undefined
        : bodyLengthOf(res.headers["content-length"], contentType),
    );
    // A GET or HEAD reads what an earlier call made (a stored response polled to completion, a
    // stream resumed), and so do a shape's storedReads (a response cancelled): its usage was that
    // call's work, charged there. Metered, every poll of a background response charged its tokens again.
    const meter =
      READS_STORED.test(input.method) || onPaths(provider.shape.storedReads, input.path)
        ? NO_USAGE
        : provider.shape.meter(typeof contentType === "string" ? contentType : undefined);
    let outcome = res.statusCode >= 400 ? Outcome.UPSTREAM_ERROR : Outcome.COMPLETE;
    let error: string | undefined;
    let bytes = 0;
    /** The answer was read to its end (for the budget's charge). */
    let whole = false;
    // A budgeted call whose client left reads the rest unforwarded, within bounds, for its
    // usage (src/relay/usage-drain.ts); other calls end with their client as before.
    let drain: Drain | undefined;
    const startDrain = (): void => {
      drain ??= new Drain(() => res.body.destroy(DRAIN_CUT));
    };
    const unlisten = drains ? onClientGone(input.signal, startDrain) : undefined;
    const forward = (chunk: Buffer): void | Promise<void> => {
      if (!drains) return sink.write(chunk);
      if (drain) return;
      try {
        const pending = sink.write(chunk);
        return pending === undefined ? undefined : pending.catch(startDrain);
      } catch {
        startDrain();
      }
    };
    try {
      // Each chunk is metered and written as the socket delivers it (src/relay/upstream-client.ts).
      await res.body.pipe((chunk) => {
        bytes += chunk.length;
        meter.feed(chunk);
        ids?.feed(chunk);
        if (drain) {
          if (drain.take(chunk.length)) res.body.destroy(DRAIN_CUT);
          return;
        }
        if (filter) {
          const kept = filter.feed(chunk);
          return kept.length > 0 ? forward(kept) : undefined;
        }
        if (!redactor) return forward(chunk);
        const safe = coded ? EMPTY : redactor.feed(chunk);
        // Past the scan bound the rest is not read: the upstream call ends here.
        if (coded || redactor.cut) res.body.destroy(ERROR_BODY_CUT);
        return safe.length > 0 ? forward(safe) : undefined;
      });
      whole = true;
      const rest = redactor ? redactor.end() : filter?.end();
      if (rest !== undefined && rest.length > 0 && !drain) await forward(rest);
    } catch (e) {
      // An error body cut on purpose ends like a whole one: what was forwarded is complete.
      if (e !== ERROR_BODY_CUT) {
        outcome = Outcome.TRUNCATED;
        error =
          e === SHUTDOWN_CUT
            ? RELAY_SHUTTING_DOWN
            : drain !== undefined || input.signal.aborted
              ? "client went away"
              : (e as { code?: string }).code === "UND_ERR_BODY_TIMEOUT"
                ? "upstream stalled"
                : "upstream stream interrupted";
        res.body.destroy();
      } else whole = true;
    } finally {
      drain?.stop();
      unlisten?.();
    }
    // Drained to its end: metered whole, but the client did not get it all. So too an answer
    // whose client left while its last chunk waited for the socket (HttpSink's pending write
    // resolves on `close`): the upstream ended whole, the client has not got it.
    if ((drain !== undefined || input.signal.aborted) && outcome === Outcome.COMPLETE) {
      outcome = Outcome.TRUNCATED;
      error = "client went away";
    }
    if (outcome === Outcome.UPSTREAM_ERROR) error = "upstream returned an error";
    const usage = meter.result();
    // Awaited only when there is something to wait for: a budget's settlement, an object's record.
    const settled = record(res.statusCode, outcome, usage, bytes, keyId, { kind: "answered", status: res.statusCode, whole, usage });
    if (settled !== SETTLED) await settled;
    if (ids !== undefined) await ids.settled();
    const ended = sink.end({ outcome, usage, callsLeft, error });
    if (ended !== undefined) await ended;
  }
}

/** Methods that do no new work at the provider (RFC 9110 9.2.1, safe methods). */
const READS_STORED = /^(GET|HEAD)$/i;
const NO_USAGE: UsageMeter = { feed() {}, result: () => undefined };

/** The call's bounds (src/tokens/budget-reservations.ts) with its model's price. */
function callCost(checked: Checked, body: Buffer, remoteKeys: readonly string[] | undefined, price: ModelPrice | undefined): CallCost {
  // Only a budgeted call (given its shape's keys) pays for the scan: for the others the bound
  // only prices a call that left without usage.
  const remoteInput = remoteKeys !== undefined && checked.json && namesRemoteInput(body, remoteKeys);
  const shape = { json: checked.json, bodyBytes: body.length, outputCap: checked.outputCap, choices: checked.choices, remoteInput };
  const { input, output } = callBounds(shape);
  return { maxTokens: callMaximum(shape), inputTokens: input, outputTokens: output, price };
}

/** The micro-dollars a priced call is charged, by the rule of its LLM tokens. */
function costCharged(prices: Prices, cost: CallCost, end: CallEnd): number {
  const price = cost.price!;
  return chargeOf(prices.maxCostOf(price, cost.inputTokens, cost.outputTokens), end, (u) => prices.costOf(price, u));
}

const EMPTY = Buffer.alloc(0);
/** Ends the upstream call of an error body cut at the redaction scan's bound. */
const ERROR_BODY_CUT = new Error("error body cut at the redaction bound");

/** A `Content-Encoding` other than identity. */
function isCoded(encoding: string | string[] | undefined): boolean {
  const v = Array.isArray(encoding) ? encoding.join(",") : encoding;
  return v !== undefined && v.trim() !== "" && v.trim().toLowerCase() !== "identity";
}

/** A declared length the client may be given: a plain integer, never for an event stream. */
function bodyLengthOf(contentLength: string | string[] | undefined, contentType: string | string[] | undefined): number | undefined {
  if (typeof contentLength !== "string" || !/^\d{1,15}$/.test(contentLength)) return undefined;
  if (typeof contentType === "string" && contentType.includes("text/event-stream")) return undefined;
  return Number(contentLength);
}
