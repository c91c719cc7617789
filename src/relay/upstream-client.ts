/**
 * The HTTP client for providers: one undici Agent, which keeps a keep-alive pool per upstream
 * origin. A failure before the response headers says whether the request was sent
 * (`UpstreamFailed.sent`), because the refund rule (DESIGN 3.3) depends on it: undici reports
 * it, the error code is not guessed from.
 *
 * Calls go through undici's dispatch API, not `request()`: the answer's body is handed on
 * chunk by chunk as the socket delivers it (`UpstreamBody.pipe`), with no Readable stream, no
 * async iterator and no event-loop turn between a chunk's arrival and its write to the client.
 * Backpressure: while the sink is busy, chunks wait in a small queue; past HIGH_WATER bytes
 * the upstream socket is paused until the sink has caught up.
 *
 * A request body is a buffer or, for uploads, a stream (StreamedBody, issue 25) read as the
 * upstream socket takes it; a RelayError it fails with (413 past the limit, 403 from the
 * multipart watch) is the call's error, with `sent` as for any other failure.
 */
import type { Readable } from "node:stream";
import { Agent, type Dispatcher } from "undici";
import { RelayError, type RelayErrorCode } from "../errors.js";
import type { CallSignal } from "./types.js";
import type { UpstreamTarget } from "./upstream-url.js";

export interface UpstreamOptions {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: UpstreamBody;
}

/** Where a chunk goes; a returned promise holds the next chunks until it settles. */
export type ChunkWriter = (chunk: Buffer) => void | Promise<void>;

export interface UpstreamBody {
  /**
   * Hands every chunk to `write`, in order, as it arrives. Resolves when the body ended whole;
   * rejects when it broke off (the error keeps undici's `code`, e.g. UND_ERR_BODY_TIMEOUT) or
   * when `write` threw or rejected (the upstream call is then aborted). Call it once.
   */
  pipe(write: ChunkWriter): Promise<void>;
  /** Aborts the upstream call; chunks not yet handed on are dropped. */
  destroy(err?: Error): void;
  /** Reads and discards the body (up to `limit` bytes, then aborts) so the connection is reused. */
  dump(limit?: number): Promise<void>;
}

/** A request body sent as it streams in (src/relay/upload-body.ts). */
export interface StreamedBody {
  /** The declared length, sent as `Content-Length` (else the body goes chunked). */
  readonly length: number | undefined;
  /** The body for one attempt; throws when it can no longer be sent whole. */
  open(): Readable;
}

/** Bytes queued for a busy sink before the upstream socket is paused. */
const HIGH_WATER = 64 * 1024;
const DUMP_LIMIT = 128 * 1024;

export class UpstreamClient {
  readonly #agent: Agent;

  constructor(private readonly opts: UpstreamOptions) {
    this.#agent = new Agent({
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      connections: 256,
      connect: { timeout: 10_000, noDelay: true },
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.idleTimeoutMs,
    });
  }

  /**
   * Sends the request. A failure before the response headers throws UpstreamFailed (502/504,
   * `cause` set), whose `sent` says whether a byte may have reached the provider. A client that
   * went away throws ClientGone.
   */
  send(
    url: UpstreamTarget | URL | string,
    method: string,
    headers: Record<string, string>,
    body: Buffer | StreamedBody | undefined,
    signal: CallSignal,
  ): Promise<UpstreamResponse> {
    // One promise per call, settled by undici's callbacks; failures are mapped on the way out
    // (an async wrapper with try/await would add two more per call, issue 22).
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const call = new UpstreamCall(signal, resolve, (e) => reject(failure(e, call.sent, signal)));
      try {
        const { origin, path } = typeof url === "string" || url instanceof URL ? targetOf(url) : url;
        let payload: Buffer | Readable | null = null;
        if (Buffer.isBuffer(body)) payload = body.length > 0 ? body : null;
        else if (body !== undefined) {
          payload = body.open();
          if (body.length !== undefined) headers = { ...headers, "content-length": String(body.length) };
        }
        this.#agent.dispatch({ origin, path, method: method as Dispatcher.HttpMethod, headers, body: payload }, call);
      } catch (e) {
        reject(failure(e, call.sent, signal));
      }
    });
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

/** What a failure before the response headers means for the call: ClientGone, or UpstreamFailed with `sent`. */
function failure(e: unknown, sent: boolean, signal: CallSignal): Error {
  if (e instanceof ClientGone || signal.aborted) return new ClientGone();
  // The streamed body's own verdict (its limit, the multipart watch): the client's error.
  if (e instanceof RelayError) return new UpstreamFailed(e.code, e.message, sent, e);
  const code = (e as { code?: string }).code;
  if (code === "UND_ERR_HEADERS_TIMEOUT") return new UpstreamFailed("upstream_timeout", "upstream timed out", sent, e);
  // Refused by the client library before anything was sent (say, a header it will not
  // write): the request's fault, not the provider's.
  if (code === "UND_ERR_INVALID_ARG") return new UpstreamFailed("bad_request", "invalid request", sent, e);
  return new UpstreamFailed("upstream_unreachable", sent ? "upstream connection lost" : "upstream unreachable", sent, e);
}

function targetOf(url: URL | string): UpstreamTarget {
  const { origin, pathname, search } = typeof url === "string" ? new URL(url) : url;
  return { origin, path: pathname + search };
}

/** The client went away before the upstream answered. */
export class ClientGone extends Error {
  override name = "ClientGone";
}

/**
 * No answer from the provider. `sent` is false only when undici never began to write the
 * request to a connection (connection refused, DNS or TLS failure, a request undici would not
 * write): then no byte can have reached the provider, and the call may be refunded or tried on
 * another key. When true (a timeout or reset after the request was written), the provider may
 * have done, and billed, the work.
 */
export class UpstreamFailed extends RelayError {
  override name = "UpstreamFailed";
  constructor(
    code: RelayErrorCode,
    message: string,
    readonly sent: boolean,
    cause: unknown,
  ) {
    super(code, message, { cause });
  }
}

/** One upstream call: undici's handler for it, and the body handed to the engine. */
class UpstreamCall implements Dispatcher.DispatchHandler, UpstreamBody {
  #controller: Dispatcher.DispatchController | undefined;
  #sent = false;
  #started = false;
  #writer: ChunkWriter | undefined;
  #queue: Buffer[] = [];
  #queued = 0;
  /** A write whose promise has not settled: later chunks wait behind it. */
  #busy = false;
  #ended = false;
  #failed: Error | undefined;
  #settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #unlisten: (() => void) | undefined;

  constructor(
    private readonly signal: CallSignal,
    private readonly resolveResponse: (res: UpstreamResponse) => void,
    private readonly rejectResponse: (e: unknown) => void,
  ) {
    if (signal.aborted) return;
    const onAbort = (): void => this.destroy(new ClientGone());
    if ("addEventListener" in signal) {
      signal.addEventListener("abort", onAbort, { once: true });
      this.#unlisten = () => signal.removeEventListener("abort", onAbort);
    } else {
      signal.once("abort", onAbort);
      this.#unlisten = () => signal.off("abort", onAbort);
    }
  }

  /** Undici began writing the request to a connection: a byte may have reached the provider. */
  get sent(): boolean {
    return this.#sent;
  }

  // --- undici's side -------------------------------------------------------------------

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.signal.aborted || this.#failed) {
      // Aborted here, undici writes nothing (writeH1/writeH2 return on `request.aborted`).
      controller.abort(this.#failed ?? new ClientGone());
      return;
    }
    // Undici calls this (the legacy `onConnect`, through its UnwrapHandler) only from writeH1
    // and writeH2 (lib/dispatcher/client-h1.js, client-h2.js), on a connected socket or
    // session, right before it writes the request head, synchronously. Connect, DNS and TLS
    // errors, and requests it refuses, fail before it. `onRequestSent`/`onBodySent` would come
    // later, after the body, and UnwrapHandler does not pass them to a handler of this style.
    this.#sent = true;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx informational: the real answer follows
    this.#started = true;
    this.resolveResponse({ statusCode, headers, body: this });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#failed) return;
    if (this.#idle()) {
      this.#write(chunk);
      return;
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued > HIGH_WATER) controller.pause();
  }

  onResponseEnd(): void {
    this.#ended = true;
    this.#unlisten?.();
    if (this.#writer) this.#drain();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.#unlisten?.();
    if (!this.#started) {
      this.rejectResponse(err);
      return;
    }
    this.#fail(err);
  }

  // --- the engine's side ---------------------------------------------------------------

  pipe(write: ChunkWriter): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#failed) {
        reject(this.#failed);
        return;
      }
      this.#settle = { resolve, reject };
      this.#writer = write;
      this.#drain();
    });
  }

  destroy(err: Error = new Error("upstream call aborted")): void {
    if (this.#failed || (this.#ended && this.#idle())) return; // already over
    this.#fail(err);
    this.#unlisten?.();
    if (!this.#started) this.rejectResponse(err);
    // Never from inside undici's own callback: abort on the next microtask.
    const controller = this.#controller;
    if (controller) queueMicrotask(() => controller.abort(err));
  }

  dump(limit = DUMP_LIMIT): Promise<void> {
    let seen = 0;
    return this.pipe((chunk) => {
      seen += chunk.length;
      if (seen > limit) this.destroy();
    }).catch(() => {});
  }

  // --- inside ---------------------------------------------------------------------------

  /** A writer is attached and nothing waits for it: a chunk can go straight through. */
  #idle(): boolean {
    return this.#writer !== undefined && !this.#busy && this.#queue.length === 0;
  }

  /** Hands one chunk to the writer; a promise makes the chunks after it wait. */
  #write(chunk: Buffer): void {
    let pending: void | Promise<void>;
    try {
      pending = this.#writer!(chunk);
    } catch (e) {
      this.destroy(asError(e));
      return;
    }
    if (pending === undefined) return;
    this.#busy = true;
    pending.then(
      () => {
        this.#busy = false;
        this.#drain();
      },
      (e: unknown) => {
        this.#busy = false;
        this.destroy(asError(e));
      },
    );
  }

  /** Writes queued chunks until one makes us wait; resumes the socket once below the mark. */
  #drain(): void {
    while (!this.#busy && !this.#failed && this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      this.#queued -= chunk.length;
      this.#write(chunk);
    }
    if (this.#failed || this.#busy) return;
    if (this.#controller?.paused && this.#queued <= HIGH_WATER) this.#controller.resume();
    if (this.#ended && this.#queue.length === 0) this.#settle?.resolve();
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    this.#queue = [];
    this.#queued = 0;
    this.#settle?.reject(err);
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
