/**
 * The relay engine: the one code path behind both the HTTP layer (`/api/<provider>/*`) and
 * RelayService.Relay. It checks the token and its policy, counts the call, forwards it with
 * the real key and streams the answer into a sink, chunk for chunk.
 *
 * Before `sink.head` it throws RelayError (the caller renders it); after, it never throws: it
 * ends the sink with an outcome (COMPLETE, UPSTREAM_ERROR or TRUNCATED).
 */
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { invalidToken, RelayError } from "../errors.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { Usage } from "../providers/types.js";
import type { TokenStore } from "../tokens/token-store.js";
import { clientHeaders, upstreamHeaders, type HeaderInput } from "./headers.js";
import { checkPolicy } from "./policy.js";
import { ClientGone, type UpstreamClient } from "./upstream-client.js";
import { upstreamUrl } from "./upstream-url.js";

export interface RelayInput {
  providerId: string;
  method: string;
  /** Path below the provider root, starting with `/`. */
  path: string;
  query: URLSearchParams | undefined;
  headers: HeaderInput;
  body: Buffer;
  /** The relay token as the client sent it. */
  token: string | undefined;
  origin: string | undefined;
  /** Aborts when the client goes away; passed on to the upstream request. */
  signal: AbortSignal;
}

export interface RelayEnd {
  outcome: Outcome;
  usage: Usage | undefined;
  callsLeft: number | null;
  /** Fixed, secret-free text when the outcome is not COMPLETE. */
  error: string | undefined;
}

/** Where the answer goes: an HTTP response or a RelayService stream. */
export interface RelaySink {
  head(status: number, headers: Record<string, string | string[]>): void;
  /** Resolves when the chunk may be followed by the next one (backpressure). */
  write(chunk: Buffer): void | Promise<void>;
  end(end: RelayEnd): void | Promise<void>;
}

/** One finished call, for usage records and metrics. Holds ids only, never secrets. */
export interface CallRecord {
  tokenId: string;
  subject: string;
  provider: string;
  model: string | undefined;
  /** Id of the pool key that served the call; undefined for an inline key. */
  keyId: string | undefined;
  status: number;
  outcome: Outcome;
  usage: Usage | undefined;
  bytes: number;
  latencyMs: number;
}

export interface RelayEngineDeps {
  providers: ProviderRegistry;
  tokens: TokenStore;
  upstream: UpstreamClient;
  /** Called once per counted call, after it ended. */
  onCall?: (record: CallRecord) => void;
}

export class RelayEngine {
  constructor(private readonly deps: RelayEngineDeps) {}

  async relay(input: RelayInput, sink: RelaySink): Promise<void> {
    const started = performance.now();
    const { providers, tokens, upstream } = this.deps;
    const provider = providers.get(input.providerId);
    if (!provider) throw new RelayError("not_found", "unknown provider");
    if (input.token === undefined || input.token === "") throw invalidToken();
    const token = await tokens.authenticate(input.token);
    const model = checkPolicy(token, provider, input);
    if (token.upstreamKey === undefined) throw new RelayError("failed_precondition", "no upstream key for this token");
    const url = upstreamUrl(provider, input.path, input.query, token.upstreamKey);
    const headers = upstreamHeaders(input.headers, provider, token.upstreamKey);

    const { callsLeft } = await tokens.use(token);
    const record = (status: number, outcome: Outcome, usage: Usage | undefined, bytes: number): void =>
      this.deps.onCall?.({
        tokenId: token.id,
        subject: token.subject,
        provider: provider.id,
        model,
        keyId: undefined,
        status,
        outcome,
        usage,
        bytes,
        latencyMs: performance.now() - started,
      });

    let res;
    try {
      res = await upstream.send(url, input.method, headers, input.body, input.signal);
    } catch (e) {
      if (e instanceof ClientGone) {
        // The request was sent; the provider may be working on it: not refunded.
        record(499, Outcome.TRUNCATED, undefined, 0);
        throw new RelayError("bad_request", "client closed the request");
      }
      // Never reached the provider (connect error, timeout before headers): refunded.
      await tokens.refund(token).catch(() => {});
      record(e instanceof RelayError ? e.status : 502, Outcome.REFUNDED, undefined, 0);
      throw e;
    }

    sink.head(res.statusCode, clientHeaders(res.headers));
    const contentType = res.headers["content-type"];
    const meter = provider.shape.meter(typeof contentType === "string" ? contentType : undefined);
    let outcome = res.statusCode >= 400 ? Outcome.UPSTREAM_ERROR : Outcome.COMPLETE;
    let error: string | undefined;
    let bytes = 0;
    try {
      for await (const chunk of res.body) {
        bytes += chunk.length;
        meter.feed(chunk);
        await sink.write(chunk);
      }
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
    record(res.statusCode, outcome, usage, bytes);
    await sink.end({ outcome, usage, callsLeft, error });
  }
}
