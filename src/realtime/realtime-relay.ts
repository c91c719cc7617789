/**
 * The WebSocket relay on the one port (issue 25): `GET /api/<provider>/<path>` with
 * `Upgrade: websocket`, for the paths a provider's spec declares (OpenAI Realtime, Azure's,
 * Gemini Live). Before the 101, as on the HTTP layer: the per-IP limit, the token (from a
 * subprotocol, a header or the query: src/realtime/session-credentials.ts) and its DPoP proof,
 * its provider, path, origin and (OpenAI) model pins, its rate, then the call is counted and
 * its budget reserved; a refusal is an HTTP error in the provider's shape. A session is one
 * call. After the 101 the provider is dialled (for Gemini once the first `setup` message passed
 * the pin) and src/realtime/realtime-session.ts holds the caps. The call is refunded only when
 * no connection to the provider was made (DESIGN 3.3). One usage record per session, at close.
 */
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Config } from "../config.js";
import { invalidToken, RelayError, toRelayError } from "../errors.js";
import { requestIdOf } from "../http/request-id.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import type { Limits } from "../limits/limits.js";
import type { Logger } from "../log.js";
import type { ProviderRegistry } from "../providers/registry.js";
import type { ProviderSpec, WebSocketSpec } from "../providers/types.js";
import type { DpopGate } from "../relay/dpop-gate.js";
import type { CallRecord } from "../relay/types.js";
import { safePath } from "../relay/upstream-url.js";
import { type CallEnd, chargeOf, DEFAULT_OUTPUT_RESERVE } from "../tokens/budget-reservations.js";
import type { CallCharges, CallCost } from "../tokens/call-charges.js";
import type { UseOutcome } from "../tokens/token-store.js";
import type { ModelPrice, Prices } from "../pricing/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { TokenStore } from "../tokens/token-store.js";
import { CLOSE } from "./close-codes.js";
import type { RealtimeFraming } from "./framing.js";
import { geminiLive } from "./gemini-live.js";
import { OpenSessions } from "./open-sessions.js";
import { openaiRealtime } from "./openai-realtime.js";
import { RealtimeSession, type SessionEnd, type SessionOptions } from "./realtime-session.js";
import { acceptedProtocol, DPOP_QUERY_PARAM, offeredProtocols, sessionToken } from "./session-credentials.js";
import { checkHandshake, checkSessionPolicy, refuseUpgrade } from "./upgrade-checks.js";
import { dialUpstream, refusalOf } from "./upstream-dial.js";

const API_PREFIX = "/api/";
const REFUNDED: CallEnd = { kind: "refunded" };
/**
 * LLM tokens a budgeted token's session reserves when it opens, and may use at most (or the
 * token's whole budget when smaller): a session cannot know its length, so it holds a block.
 * The same block is reserved on a plan's daily and monthly windows (issue 24).
 */
export const SESSION_TOKEN_RESERVE = 4 * DEFAULT_OUTPUT_RESERVE;

export interface RealtimeDeps {
  providers: ProviderRegistry;
  tokens: TokenStore;
  pools: PoolRegistry;
  limits: Limits;
  dpop: DpopGate;
  ipOf: (req: IncomingMessage) => string;
  /** Every counted session when it ends (usage records, metrics): the engine's own observer. */
  onCall: (record: CallRecord) => void;
  log: Logger;
  /** Prices, for the session's cost and dollar budgets (issue 24). */
  prices?: Prices | undefined;
  config: Pick<Config, "maxSessionSeconds" | "sessionIdleMs" | "sessionMaxMessageBytes" | "upstreamHeadersTimeoutMs">;
}

/** What a session may cost at most: its block of LLM tokens, priced as output (the dearest side). */
function sessionCost(cap: number, price: ModelPrice | undefined): CallCost {
  return { maxTokens: cap, inputTokens: 0, outputTokens: cap, price };
}

function framingOf(spec: WebSocketSpec): RealtimeFraming {
  return spec.framing === "gemini-live" ? geminiLive : openaiRealtime;
}

/** A counted session's state, from the count to its record. */
interface Opened {
  token: TokenMeta;
  provider: ProviderSpec;
  model: string | undefined;
  /** The counted call (a refund goes back to the plan windows it came from). */
  used: UseOutcome;
  /**
   * Held on every budget of the token and its plan; `cap` LLM tokens the session may use. For a
   * framing that names its model in the first message (Gemini Live), admitted once it is read:
   * the model's price is the session's.
   */
  charges: CallCharges | undefined;
  /** The call was given back already (a budget refused it after the 101). */
  refunded?: boolean;
  /** The admission of a Gemini Live session's budgets, under way: the record waits for it. */
  admitting?: Promise<unknown>;
  cap: number | undefined;
  price: ModelPrice | undefined;
  /** The longest the session may last: the token's own bound, else its plan's, else the relay's. */
  maxSeconds: number;
  release: () => void;
  started: number;
  requestId: string;
  keyId?: string;
  overheadMs?: number;
  upstreamStatus?: number;
}

export class RealtimeRelay {
  readonly #sessions = new OpenSessions();
  readonly #wss: WebSocketServer;
  readonly #unsubscribe: () => void;

  constructor(private readonly deps: RealtimeDeps) {
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: deps.config.sessionMaxMessageBytes,
      handleProtocols: acceptedProtocol,
    });
    this.#unsubscribe = deps.tokens.onForget((id) => this.#sessions.revoke(id));
  }

  /** Sessions open now. */
  get open(): number {
    return this.#sessions.size;
  }

  /**
   * The one-port server's upgrade hook: true when the request is a WebSocket upgrade to a
   * provider path that has sessions (the relay answers it, 101 or an HTTP error), else false.
   */
  readonly upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): boolean => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q === -1 ? url : url.slice(0, q);
    if (!pathname.startsWith(API_PREFIX) || req.method !== "GET" || req.headers.upgrade?.toLowerCase() !== "websocket") return false;
    const rest = pathname.slice(API_PREFIX.length);
    const slash = rest.indexOf("/");
    if (slash === -1) return false;
    const provider = this.deps.providers.get(rest.slice(0, slash));
    const spec = provider?.websocket;
    const path = rest.slice(slash);
    if (provider === undefined || spec === undefined || !spec.paths.some((p) => p.test(path))) return false;
    const query = new URLSearchParams(q === -1 ? "" : url.slice(q));
    void this.#open(req, socket, head, provider, framingOf(spec), path, pathname, query).catch((e: unknown) => {
      this.deps.log.error("websocket session failed", { err: e });
      socket.destroy();
    });
    return true;
  };

  /** Closes, as revoked (1008), the sessions of the tokens whose id starts with `prefix` (a login's users, when it is disabled). */
  revokePrefix(prefix: string): void {
    this.#sessions.revokePrefix(prefix);
  }

  /** Shutdown began: every session is told going-away (1001). */
  goingAway(): void {
    this.#sessions.goingAway();
  }

  /** The shutdown deadline: sessions still open are cut. Returns how many. */
  terminate(): number {
    return this.#sessions.terminate();
  }

  close(): void {
    this.#unsubscribe();
  }

  async #open(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    provider: ProviderSpec,
    framing: RealtimeFraming,
    rawPath: string,
    pathname: string,
    query: URLSearchParams,
  ): Promise<void> {
    const { tokens, limits, pools } = this.deps;
    const started = performance.now();
    const protocols = offeredProtocols(req.headers["sec-websocket-protocol"]);
    let release: (() => void) | undefined;
    let opened: Opened;
    try {
      checkHandshake(req, protocols);
      // Per IP first, before the token is looked at: bad tokens are limited too.
      await limits.checkIp(this.deps.ipOf(req));
      const path = safePath(rawPath);
      const secret = sessionToken(req.headers, query, protocols);
      if (secret === undefined || secret === "") throw invalidToken();
      const token = tokens.withPlan(await tokens.authenticate(secret));
      await this.deps.dpop.check(token, secret, { proof: query.get(DPOP_QUERY_PARAM) ?? undefined, method: "GET", path: pathname });
      const model = checkSessionPolicy(token, provider, framing, path, req.headers.origin, query);
      if (token.upstreamKey === undefined && token.pool === undefined) throw new RelayError("failed_precondition", "no upstream key for this token");
      if (token.rpm !== null) await limits.checkToken(token.id, token.rpm);
      // A session holds a slot of the global concurrency for its length, as a stream does.
      release = await limits.acquireGlobal();
      if (token.pool !== undefined) pools.keyErrors.admit(token.id);
      const used = await tokens.use(token);
      const price = this.deps.prices?.priceOf(provider.id, model);
      const cap = tokens.charged(token) ? Math.min(SESSION_TOKEN_RESERVE, token.budgetTokens ?? Infinity) : undefined;
      // Refused, it gives the call back itself.
      const charges = cap === undefined || framing.modelInFirstMessage ? undefined : await tokens.admitCharges(token, used, sessionCost(cap, price));
      const maxSeconds = token.maxSessionSeconds ?? tokens.planOf(token)?.maxSessionSeconds ?? this.deps.config.maxSessionSeconds;
      opened = { token, provider, model, used, charges, cap, price, maxSeconds, release, started, requestId: requestIdOf(req.headers["x-request-id"]) };
    } catch (e) {
      release?.();
      const err = toRelayError(e);
      if (err.code === "internal") this.deps.log.error("websocket upgrade failed", { err: e });
      refuseUpgrade(req, socket, err, provider.shape);
      return;
    }
    if (!socket.readable || !socket.writable) {
      // The client left while its call was counted (ws would drop the socket without a word).
      opened.release();
      await opened.charges?.settle(REFUNDED);
      await tokens.refund(opened.token, opened.used).catch(() => {});
      socket.destroy();
      return;
    }
    // Backstop: should ws still refuse the handshake (it answers 400 and destroys the socket
    // without calling back), the call it never opened is given back and its slot freed.
    const refused = (): void => {
      opened.release();
      void opened.charges?.settle(REFUNDED).catch(() => {});
      void tokens.refund(opened.token, opened.used).catch(() => {});
    };
    socket.once("close", refused);
    this.#wss.handleUpgrade(req, socket, head, (client) => {
      socket.off("close", refused);
      void this.#run(client, opened, framing, req, rawPath, query, protocols).catch((e: unknown) => {
        this.deps.log.error("websocket session failed", { err: e });
        client.terminate();
      });
    });
  }

  /** After the 101: the session, the provider dialled (Gemini: after its setup), the record at close. */
  async #run(
    client: WebSocket,
    o: Opened,
    framing: RealtimeFraming,
    req: IncomingMessage,
    path: string,
    query: URLSearchParams,
    protocols: string[],
  ): Promise<void> {
    const { token } = o;
    const endAt = Math.min(Date.now() + o.maxSeconds * 1000, token.expiresAtMs);
    const session = new RealtimeSession(client, {
      tokenId: token.id,
      models: token.models,
      framing,
      shape: o.provider.shape,
      endAt,
      endIsExpiry: endAt === token.expiresAtMs,
      idleMs: this.deps.config.sessionIdleMs,
      maxMessageBytes: Math.min(this.deps.config.sessionMaxMessageBytes, token.maxBodyBytes ?? Infinity),
      tokenCap: o.cap,
      costCap: this.#costCap(o),
      onEnd: (end) => {
        this.#sessions.delete(session);
        void this.#record(o, end);
      },
    });
    this.#sessions.add(session);
    if (framing.modelInFirstMessage) {
      // Held, checked against the pin by the session, and read for the record.
      const first = await session.firstMessage();
      if (first === undefined) return;
      const named = framing.reader().clientModel(first);
      if (typeof named === "string") o.model = named;
      if (!(await this.#admitNamed(session, o))) return;
    } else client.pause();
    const pooled = token.pool !== undefined ? this.deps.pools.pick(token.pool, new Set(), o.model) : undefined;
    const key = pooled?.key ?? token.upstreamKey;
    if (key === undefined) {
      session.fail(CLOSE.badGateway, new RelayError("unavailable", "no upstream key available"));
      return;
    }
    if (pooled) {
      o.keyId = pooled.id;
      try {
        const freeKey = await this.deps.limits.acquireKey(pooled.id);
        if (session.ended) {
          // The session's record was made (and its slots freed) while the key was awaited.
          freeKey();
          return;
        }
        const releaseAll = o.release;
        o.release = () => {
          freeKey();
          releaseAll();
        };
      } catch (e) {
        session.fail(CLOSE.badGateway, toRelayError(e));
        return;
      }
    }
    o.overheadMs = performance.now() - o.started;
    const dialled = dialUpstream({
      provider: o.provider,
      path: safePath(path),
      query,
      headers: req.headers,
      extraHeaders: framing.upstreamHeaders(protocols),
      key,
      maxPayload: this.deps.config.sessionMaxMessageBytes,
      handshakeTimeoutMs: this.deps.config.upstreamHeadersTimeoutMs,
      onConnected: () => session.markReached(),
    });
    session.attach(dialled.socket, () => {
      const timedOut = dialled.timedOut();
      const status = dialled.status();
      // A handshake left unanswered is recorded as the gateway timeout the client is told.
      o.upstreamStatus = status ?? (timedOut ? 504 : undefined);
      // A refused handshake says what a refused HTTP call says about its key (DESIGN 8).
      if (pooled && status === 401) this.deps.pools.strike(pooled, "upstream answered 401").catch(() => {});
      return refusalOf(status, timedOut);
    });
  }

  /**
   * A budgeted session whose model its first message named: its budgets are admitted now, at
   * that model's price (before, nothing could price it). A refusal ends the session before the
   * provider is dialled, with the error event and 4429 (spent) or 1008 (no price); the call was
   * given back by the refusal. False when the session is not to go on.
   */
  async #admitNamed(session: RealtimeSession, o: Opened): Promise<boolean> {
    if (o.cap === undefined) return true;
    const price = this.deps.prices?.priceOf(o.provider.id, o.model);
    // The record waits for this: a client that leaves meanwhile must not have its call given
    // back twice (by the record and by a refused admission), nor its reservation kept.
    const admitting = (async (): Promise<RelayError | undefined> => {
      try {
        o.charges = await this.deps.tokens.admitCharges(o.token, o.used, sessionCost(o.cap!, price));
        return undefined;
      } catch (e) {
        // Refused, the admission gave the call back itself.
        o.refunded = true;
        return toRelayError(e);
      }
    })();
    o.admitting = admitting;
    const refused = await admitting;
    if (refused !== undefined) {
      session.fail(refused.status === 429 ? CLOSE.budget : refused.status === 403 ? CLOSE.policy : CLOSE.internal, refused);
      return false;
    }
    o.price = price;
    // The client left while the budgets were asked: the record settles them (refunded).
    if (session.ended) return false;
    session.limitCost(this.#costCap(o));
    return true;
  }

  /**
   * The dollars a session may use before it is closed (4429), when a dollar limit applies: its
   * reservation, so the dollar ledgers hold as the token ones do (audio and input tokens may
   * cost more per token than the reservation's price assumed for the token cap).
   */
  #costCap(o: Opened): SessionOptions["costCap"] {
    const prices = this.deps.prices;
    const price = o.price;
    if (o.cap === undefined || price === undefined || prices === undefined) return undefined;
    const plan = this.deps.tokens.planOf(o.token);
    const dollars = o.token.budgetMicroUsd !== null || (plan !== undefined && (plan.microUsdPerDay !== null || plan.microUsdPerMonth !== null));
    if (!dollars) return undefined;
    return { microUsd: prices.maxCostOf(price, 0, o.cap), costOf: (u) => prices.costOf(price, u), model: o.model };
  }

  /** The session's one usage record; the call refunded when the provider was never reached. */
  async #record(o: Opened, end: SessionEnd): Promise<void> {
    o.release();
    await o.admitting;
    const used = end.usage?.totalTokens ?? 0;
    let outcome = end.outcome;
    let status = 101;
    if (!end.reached) {
      if (!o.refunded) await this.deps.tokens.refund(o.token, o.used).catch(() => {});
      outcome = Outcome.REFUNDED;
      status = end.refusal?.status ?? 499;
    } else if (o.upstreamStatus !== undefined) {
      outcome = Outcome.UPSTREAM_ERROR;
      status = o.upstreamStatus;
    }
    // Reported usage is the charge; a response cut before its usage came is charged its block.
    const charged: CallEnd = !end.reached
      ? REFUNDED
      : o.upstreamStatus !== undefined
        ? { kind: "answered", status: o.upstreamStatus, whole: true, usage: undefined }
        : { kind: "answered", status: 200, whole: !end.busy, usage: end.usage ?? { promptTokens: 0, completionTokens: 0, totalTokens: used } };
    await o.charges?.settle(charged);
    const prices = this.deps.prices;
    this.deps.onCall({
      tokenId: o.token.id,
      subject: o.token.subject,
      plan: o.token.plan,
      // What the budgets were charged, priced (as on the HTTP layer): a session cut while busy costs its block.
      costMicroUsd:
        o.price === undefined || prices === undefined
          ? undefined
          : chargeOf(prices.maxCostOf(o.price, 0, o.cap ?? 0), charged, (u) => prices.costOf(o.price!, u)),
      provider: o.provider.id,
      model: o.model,
      keyId: o.keyId,
      status,
      outcome,
      usage: end.usage,
      bytes: end.bytes,
      latencyMs: performance.now() - o.started,
      requestId: o.requestId,
      ...(o.overheadMs === undefined ? {} : { overheadMs: o.overheadMs }),
    });
  }
}
