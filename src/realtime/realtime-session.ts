/**
 * One relayed WebSocket session (issue 25): the client's socket and the provider's, messages
 * passed both ways unchanged, and the caps that hold while it is open: the session length, an
 * idle timeout, a message size, the model pin on every client message, and the token's LLM-token
 * budget metered from the provider's usage events. Over a cap the client gets the
 * provider-shaped error event, then the close code of src/realtime/close-codes.ts.
 *
 * Backpressure both ways: while the side a message goes to has more than HIGH_WATER bytes
 * unsent, the side it came from is paused (its socket is not read), so a slow client slows the
 * provider's reads and not the relay's memory. The client is pinged every PING_MS; one that
 * does not answer a ping by the next one is cut.
 */
import type WebSocket from "ws";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { invalidToken, RelayError } from "../errors.js";
import type { ApiShape, Usage } from "../providers/types.js";
import { CLOSE, sendable } from "./close-codes.js";
import { plainJsonObject, UNREADABLE_MODEL, type NamedModel, type RealtimeFraming, type SessionReader } from "./framing.js";
import type { Closable } from "./open-sessions.js";

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const PING_MS = 30_000;
/**
 * How long a framing that names its model in its first message (Gemini Live's `setup`) may
 * take to send it. Such a session is given back when it ends before the provider is dialled,
 * so only this bounds how long a client holds a slot without spending a call (SDKs send the
 * setup as soon as the socket opens).
 */
export const FIRST_MESSAGE_MS = 10_000;
/** How long the closing handshakes may take before both sockets are cut. */
const CLOSE_WAIT_MS = 2_000;
/** Close codes that end a session as complete, from either side. */
const NORMAL = new Set([1000, 1001, 1005]);

export interface SessionOptions {
  tokenId: string;
  /** The token's model pin (empty: any model). */
  models: ReadonlySet<string>;
  framing: RealtimeFraming;
  shape: ApiShape;
  /** When the session must end (epoch ms), and whether that is the token's expiry (else maxSessionSeconds). */
  endAt: number;
  endIsExpiry: boolean;
  idleMs: number;
  /** Largest client message (the token's max body bytes, when below the relay's limit). */
  maxMessageBytes: number;
  /** LLM tokens the session may use (its budget reservation); undefined: no budget. */
  tokenCap: number | undefined;
  /** Micro-dollars the session may use (its dollar reservation) and how its usage is priced; undefined: no dollar limit. */
  costCap?: CostCap | undefined;
  /** How often both peers are pinged (default PING_MS); a peer that has not answered by the next ping is cut. */
  pingMs?: number;
  onEnd(end: SessionEnd): void;
}

/** A dollar-limited session's cap: its reservation, and the model whose price it and the usage are reckoned at. */
export interface CostCap {
  microUsd: number;
  costOf: (usage: Usage) => number;
  model: string | undefined;
}

export interface SessionEnd {
  outcome: Outcome;
  /** A byte may have reached the provider (its socket connected): else the call is refunded. */
  reached: boolean;
  /** The close code the client was given (or gave). */
  code: number;
  usage: Usage | undefined;
  /** A response was under way when the session ended, its usage not reported. */
  busy: boolean;
  /** Bytes of provider messages. */
  bytes: number;
  /** Fixed text when the outcome is not COMPLETE. */
  error: string | undefined;
  /** The relay error that ended it before the provider was reached (its HTTP-like status). */
  refusal: RelayError | undefined;
}

export class RealtimeSession implements Closable {
  readonly tokenId: string;
  readonly #reader: SessionReader;
  #upstream: WebSocket | undefined;
  /** Client messages that arrived before the provider's socket opened. */
  readonly #held: { data: Buffer; binary: boolean }[] = [];
  #firstMessage: ((data: Buffer | undefined) => void) | undefined;
  #toUpstream = 0;
  #toClient = 0;
  #bytes = 0;
  #end: { outcome: Outcome; code: number; error: string | undefined; refusal: RelayError | undefined } | undefined;
  #clientClosed = false;
  #upstreamClosed = true;
  #costCap: SessionOptions["costCap"];
  /** The provider's socket connected (set by the dialler): its handshake may have reached it. */
  #reached = false;
  /** The provider's handshake completed: messages flow. */
  #opened = false;
  #pongDue = false;
  #upstreamPongDue = false;
  /** onEnd was called. */
  #settled = false;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #idle: NodeJS.Timeout;

  constructor(
    private readonly client: WebSocket,
    private readonly opts: SessionOptions,
  ) {
    this.tokenId = opts.tokenId;
    this.#reader = opts.framing.reader();
    this.#costCap = opts.costCap;
    const left = Math.max(0, opts.endAt - Date.now());
    this.#timers.push(
      setTimeout(() => (opts.endIsExpiry ? this.revoked() : this.#cap(CLOSE.timeLimit, new RelayError("rate_limited", "session time limit reached"))), left),
      setInterval(() => this.#ping(), opts.pingMs ?? PING_MS),
    );
    if (opts.framing.modelInFirstMessage) {
      const first = setTimeout(
        () => {
          if (this.#held.length === 0 && this.#upstream === undefined) this.#cap(CLOSE.timeLimit, new RelayError("rate_limited", "no setup message in time"));
        },
        Math.min(FIRST_MESSAGE_MS, opts.idleMs),
      );
      this.#timers.push(first);
    }
    this.#idle = setTimeout(() => this.#cap(CLOSE.timeLimit, new RelayError("rate_limited", "session idle for too long")), opts.idleMs);
    client.on("message", (data: Buffer, binary: boolean) => this.#fromClient(data, binary));
    client.on("pong", () => (this.#pongDue = false));
    client.on("close", (code: number) => {
      this.#clientClosed = true;
      this.#finish(NORMAL.has(code) ? Outcome.COMPLETE : Outcome.TRUNCATED, code, NORMAL.has(code) ? undefined : "client closed abnormally");
    });
    // A message past the relay's limit (ws closes with 1009 itself), or a broken socket.
    client.on("error", (e: Error & { code?: string }) => {
      this.#finish(Outcome.TRUNCATED, e.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH" ? CLOSE.tooBig : 1006, "client connection failed");
    });
  }

  /**
   * The first client message, once read and checked (Gemini's setup names the model); undefined
   * when the session ended first. Later messages are held until `attach`.
   */
  firstMessage(): Promise<Buffer | undefined> {
    if (this.#end) return Promise.resolve(undefined);
    if (this.#held.length > 0) return Promise.resolve(this.#held[0]!.data);
    return new Promise((resolve) => (this.#firstMessage = resolve));
  }

  /**
   * The provider's socket, as it is dialled: once open, held client messages go and messages
   * flow both ways. `refusal` names what a failed handshake is told to the client as.
   */
  attach(upstream: WebSocket, refusal: () => RelayError): void {
    this.#upstream = upstream;
    this.#upstreamClosed = false;
    upstream.on("open", () => {
      this.#opened = true;
      if (this.#end) return;
      for (const m of this.#held.splice(0)) this.#send(upstream, m.data, m.binary, "up");
      if (this.#toUpstream <= HIGH_WATER) this.client.resume();
    });
    upstream.on("message", (data: Buffer, binary: boolean) => this.#fromUpstream(data, binary));
    upstream.on("pong", () => (this.#upstreamPongDue = false));
    // Always followed by `close`, which decides.
    upstream.on("error", () => {});
    upstream.on("close", (code: number, reason: Buffer) => {
      this.#upstreamClosed = true;
      if (this.#end === undefined && !this.#opened) this.#cap(CLOSE.badGateway, refusal());
      else if (this.#end === undefined) {
        // The provider ended it: its code (and reason) go to the client as they are.
        const normal = NORMAL.has(code);
        this.#close(
          normal ? Outcome.COMPLETE : Outcome.TRUNCATED,
          sendable(code) ? code : code === 1005 ? 1000 : CLOSE.badGateway,
          normal ? undefined : "provider closed the session",
          undefined,
          reason,
        );
      }
      this.#settle();
    });
    if (this.#end) upstream.terminate();
  }

  /** The session's end began (a cap, a close from either side). */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Sets the dollar cap once the session's price is known (a model named in the first message). */
  limitCost(cap: SessionOptions["costCap"]): void {
    this.#costCap = cap;
  }

  /** The provider's socket connected: from here the call counts whatever happens (DESIGN 3.3). */
  markReached(): void {
    this.#reached = true;
  }

  /** Ends the session before (or instead of) the provider's socket: the error event, then `code`. */
  fail(code: number, err: RelayError): void {
    this.#close(Outcome.TRUNCATED, code, err.message, err);
  }

  revoked(): void {
    this.#close(Outcome.TRUNCATED, CLOSE.policy, "token revoked or expired", invalidToken());
  }

  goingAway(): void {
    this.#close(Outcome.TRUNCATED, CLOSE.goingAway, "relay shutting down", new RelayError("unavailable", "relay shutting down"));
  }

  terminate(): void {
    this.#finish(Outcome.TRUNCATED, 1006, "relay shutting down");
    this.client.terminate();
    this.#upstream?.terminate();
  }

  #fromClient(data: Buffer, binary: boolean): void {
    if (this.#end) return;
    this.#idle.refresh();
    if (data.length > this.opts.maxMessageBytes) {
      this.#cap(CLOSE.tooBig, new RelayError("payload_too_large", "message too large for this token"));
      return;
    }
    const first = this.#held.length === 0 && !this.#reached;
    if (this.opts.models.size > 0 && !plainJsonObject(data)) {
      // Bytes the relay cannot read for a model must not reach a reader that might (DESIGN 3.4).
      this.#cap(CLOSE.policy, new RelayError("permission_denied", "a model-pinned session takes only JSON objects in UTF-8"));
      return;
    }
    const model = this.#reader.clientModel(data);
    if (!this.#allowed(model, first)) {
      this.#cap(CLOSE.policy, new RelayError("permission_denied", "model not allowed for this token"));
      return;
    }
    if (this.#costCap !== undefined && model !== undefined && model !== this.#costCap.model) {
      // Its reservation and its usage are priced at its model's rates: another model would be
      // metered at the wrong price (a dearer one past the dollar limit).
      this.#cap(CLOSE.policy, new RelayError("permission_denied", "a session under a dollar budget cannot change its model"));
      return;
    }
    const up = this.#upstream;
    if (up === undefined || !this.#opened) {
      // Before the provider's socket opens: held (the client paused, so at most a few).
      this.#held.push({ data, binary });
      this.client.pause();
      this.#firstMessage?.(data);
      this.#firstMessage = undefined;
      return;
    }
    this.#send(up, data, binary, "up");
  }

  /** A pinned token: every model a message names must be allowed, and the setup message must name one. */
  #allowed(model: NamedModel, first: boolean): boolean {
    if (this.opts.models.size === 0) return true;
    if (model === UNREADABLE_MODEL) return false;
    if (model === undefined) return !(first && this.opts.framing.modelInFirstMessage);
    return this.opts.models.has(model);
  }

  #fromUpstream(data: Buffer, binary: boolean): void {
    if (this.#end) return;
    this.#idle.refresh();
    this.#bytes += data.length;
    this.#reader.server(data);
    this.#send(this.client, data, binary, "down");
    const cap = this.opts.tokenCap;
    const usage = this.#reader.usage();
    if (cap !== undefined && (usage?.totalTokens ?? 0) >= cap) {
      this.#cap(CLOSE.budget, new RelayError("budget_exhausted", "this token has used all of its LLM token budget"));
    } else if (this.#costCap !== undefined && usage !== undefined && this.#costCap.costOf(usage) >= this.#costCap.microUsd) {
      this.#cap(CLOSE.budget, new RelayError("budget_exhausted", "this session has used its dollar budget"));
    }
  }

  /** Sends with backpressure: past HIGH_WATER unsent the other side is paused, below LOW_WATER resumed. */
  #send(to: WebSocket, data: Buffer, binary: boolean, way: "up" | "down"): void {
    const from = way === "up" ? this.client : this.#upstream;
    const n = data.length;
    if (way === "up") this.#toUpstream += n;
    else this.#toClient += n;
    to.send(data, { binary }, () => {
      const unsent = way === "up" ? (this.#toUpstream -= n) : (this.#toClient -= n);
      if (unsent <= LOW_WATER && from?.isPaused && this.#opened && !this.#end) from.resume();
    });
    if ((way === "up" ? this.#toUpstream : this.#toClient) > HIGH_WATER) from?.pause();
  }

  #ping(): void {
    // A side the relay stopped reading (backpressure from the other) may have answered unread:
    // it is not judged on that round.
    const client = this.client;
    const up = this.#upstream;
    if (this.#pongDue && !client.isPaused) {
      // 1006 goes on no wire (#close cuts the client's socket): the provider is told 1000.
      this.#finish(Outcome.TRUNCATED, 1006, "client stopped answering pings");
      return;
    }
    if (this.#upstreamPongDue && up !== undefined && !up.isPaused) {
      // A half-open path to the provider: nothing would ever come back on it.
      this.#cap(CLOSE.badGateway, new RelayError("upstream_unreachable", "upstream stopped answering pings"));
      return;
    }
    this.#pongDue = !client.isPaused;
    client.ping();
    // Keeps idle NAT and proxy paths to the provider open, and finds one that broke silently;
    // ws answers the provider's own pings.
    if (up?.readyState === 1 && this.#opened) {
      this.#upstreamPongDue = !up.isPaused;
      up.ping();
    }
  }

  /** A cap or a failure: the error event, then the close code. */
  #cap(code: number, err: RelayError): void {
    this.#close(Outcome.TRUNCATED, code, err.message, err);
  }

  /** Begins the end: the error event (when any) and the close frames; `#settle` reports it. */
  #close(outcome: Outcome, code: number, error: string | undefined, err?: RelayError, reason?: Buffer): void {
    if (this.#end) return;
    this.#end = { outcome, code, error, refusal: this.#reached ? undefined : err };
    this.#stopTimers();
    this.#firstMessage?.(undefined);
    const client = this.client;
    // A paused socket would never read the client's closing frame.
    if (client.isPaused) client.resume();
    if (client.readyState === 1) {
      if (err) client.send(this.opts.framing.errorEvent(err, this.opts.shape));
      // ws throws on a code no close frame may carry (1006: a peer gone silent, the shutdown
      // deadline): such a socket is cut instead, as the code says.
      if (sendable(code)) client.close(code, reason);
      else client.terminate();
    }
    const up = this.#upstream;
    if (up && !this.#opened) up.terminate();
    else if (up && up.readyState === 1) up.close(sendable(code) && code < 4000 && code !== CLOSE.badGateway ? code : 1000);
    const cut = setTimeout(() => {
      client.terminate();
      up?.terminate();
    }, CLOSE_WAIT_MS);
    cut.unref();
    this.#timers.push(cut);
    this.#settle();
  }

  /** The client's socket ended (or failed): the session ends with it. */
  #finish(outcome: Outcome, code: number, error: string | undefined): void {
    if (this.#end === undefined) this.#close(outcome, code, error);
    else this.#settle();
  }

  #settle(): void {
    const end = this.#end;
    if (end === undefined || !this.#clientClosed || !this.#upstreamClosed || this.#settled) return;
    this.#settled = true;
    for (const t of this.#timers) clearTimeout(t);
    this.opts.onEnd({
      outcome: end.outcome,
      reached: this.#reached,
      code: end.code,
      usage: this.#reader.usage(),
      busy: this.#reader.busy(),
      bytes: this.#bytes,
      error: end.error,
      refusal: end.refusal,
    });
  }

  #stopTimers(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.length = 0;
    clearTimeout(this.#idle);
  }
}
