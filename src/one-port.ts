/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2 (h2c, which gRPC needs). Node's
 * `http2.createServer({allowHTTP1})` only mixes the two over TLS (nodejs/node#44887), so a
 * net server peeks at the first bytes: the HTTP/2 connection preface starts with `PRI `.
 *
 * Pitfalls handled (../shared/STACK.md): an `error` listener from the first byte, `noDelay`
 * on the net server (handed-over sockets skip Node's setNoDelay; SSE would stall ~40 ms), and
 * `listening` emitted on the inner servers so their timeouts and connection tracking run.
 *
 * Bounds (DESIGN 12), the same on both protocols where the protocol allows: connections per
 * client address; the first request head within `headersTimeoutMs` of accept; a whole request
 * body within `requestTimeoutMs` (HTTP/1.1 through Node's checks, h2c per stream here); streams
 * per h2c session (SETTINGS_MAX_CONCURRENT_STREAMS, nghttp2 refuses the excess); idle
 * keep-alive connections and sessions closed after `keepAliveTimeoutMs`.
 *
 * Shutdown (issue 19): `close()` stops accepting; answers in progress and later ones close their
 * HTTP/1.1 connection, h2c sessions get GOAWAY; idle connections are closed only between
 * requests (a request already in a socket's buffer is read and answered first); at the grace
 * deadline the caller ends open streams, then the remaining connections are cut.
 */
import { createServer as createHttp1, type IncomingMessage, type ServerResponse } from "node:http";
import { constants, createServer as createHttp2, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from "node:http2";
import { createServer as createNet, type AddressInfo, type Socket } from "node:net";
import { setImmediate as afterPoll, setTimeout as sleep } from "node:timers/promises";

export type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI ");
/** After `onDeadline`, how long the streams it ended have to flush their last event. */
const CUT_FLUSH_MS = 500;
/** How often idle connections are looked for while draining. */
const IDLE_SWEEP_MS = 25;

/** What Node's HTTP/1.1 server hangs on a socket: the response being written (its closeIdleConnections reads it too). */
interface Http1Socket extends Socket {
  _httpMessage?: (ServerResponse & { _last?: boolean }) | null;
}

export interface OnePortOptions {
  /** Largest request head (HTTP/1.1); past it the answer is 431. */
  maxHeaderSize?: number;
  /**
   * Time a client has to send a complete request head. For a connection's first request it
   * runs from accept, through the protocol sniff (an idle or trickling socket, an h2c session
   * that never opens a stream: slowloris); later HTTP/1.1 heads are timed by Node.
   */
  headersTimeoutMs?: number;
  /** Time a client has to send a whole request, body included (HTTP/1.1 request, h2c stream). */
  requestTimeoutMs?: number;
  /**
   * How often Node checks HTTP/1.1 connections against the two timeouts above: it only looks
   * then, so a head is cut up to this late (Node's default, 30 s, let a 30 s limit run to 60).
   */
  connectionsCheckingIntervalMs?: number;
  /** How long an idle keep-alive connection (HTTP/1.1) or a session without streams (h2c) stays. */
  keepAliveTimeoutMs?: number;
  /** Concurrent streams per h2c session, announced in SETTINGS. */
  h2MaxStreams?: number;
  /** Open connections per client address, whatever the protocol (0: unlimited). */
  maxConnectionsPerIp?: number;
  /** The key a socket address is counted under; undefined exempts it (a trusted proxy). */
  connectionKey?: (address: string) => string | undefined;
  /**
   * An HTTP/1.1 request asking to upgrade (WebSockets, issue 25): true when the handler took the
   * socket. Any other upgrade request (`Upgrade: h2c`, a WebSocket to a path without sessions)
   * is served as a plain request, as it was before there was an upgrade listener.
   */
  upgrade?: (req: IncomingMessage, socket: Socket, head: Buffer) => boolean;
}

export interface CloseOptions {
  /**
   * Called once at the grace deadline while connections are still open: ends open streams so
   * each can write its last event (they get CUT_FLUSH_MS) before the rest is cut.
   */
  onDeadline?: () => void;
  /** Aborting it ends the grace at once (a second signal). */
  hurry?: AbortSignal;
}

export interface OnePortServer {
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Stops accepting, lets requests finish up to `graceMs` (idle connections closed between
   * requests, h2c sessions sent GOAWAY), then calls `onDeadline` and closes every connection.
   */
  close(graceMs: number, opts?: CloseOptions): Promise<void>;
  /** Open sockets, h2c sessions, and client addresses being counted (tests, metrics). */
  stats(): { sockets: number; sessions: number; addresses: number };
}

export function createOnePortServer(handler: Handler, opts: OnePortOptions = {}): OnePortServer {
  const headersTimeout = opts.headersTimeoutMs ?? 30_000;
  const requestTimeout = Math.max(opts.requestTimeoutMs ?? 300_000, headersTimeout);
  const keepAlive = opts.keepAliveTimeoutMs ?? 65_000;
  const maxPerAddress = opts.maxConnectionsPerIp ?? 0;
  /** close() began: answers close their connection, new h2c sessions take one round of streams. */
  let closing = false;
  const h1 = createHttp1(
    {
      maxHeaderSize: opts.maxHeaderSize ?? 16 * 1024,
      requestTimeout,
      headersTimeout,
      keepAliveTimeout: keepAlive,
      connectionsCheckingInterval: opts.connectionsCheckingIntervalMs ?? 500,
    },
    (req, res) => {
      // Tells the client before its next request, so no request is ever sent on a connection
      // that is about to close (merged with the handler's own writeHead headers).
      if (closing) res.setHeader("connection", "close");
      handler(req, res);
    },
  );
  // maxSessionMemory (MB) is per session: nghttp2 state, header tables, queued output. It does
  // not count the JS side of a stream (~17 KB of heap each, held in a handler): the stream cap does.
  const h2 = createHttp2({ maxSessionMemory: 32, settings: { maxConcurrentStreams: opts.h2MaxStreams ?? 100 } }, (req, res) => {
    if (!req.stream.endAfterHeaders) bodyDeadline(req, requestTimeout);
    handler(req, res);
  });

  // Sockets whose first request head has not arrived: each with its deadline from accept.
  const firstHead = new Map<Socket, NodeJS.Timeout>();
  const headArrived = (socket: Socket): void => {
    const timer = firstHead.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    firstHead.delete(socket);
  };
  h1.on("request", (req: IncomingMessage) => headArrived(req.socket));
  h1.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    headArrived(socket);
    if (closing) socket.destroy();
    else if (!opts.upgrade?.(req, socket, head)) replayAsPlainRequest(h1, req, socket, head);
  });

  const sessions = new Set<Http2Session>();
  // `session` is emitted synchronously inside `emit("connection")`: this names its socket.
  let handing: Socket | undefined;
  h2.on("session", (s) => {
    const socket = handing;
    sessions.add(s);
    // A session that began while closing (its bytes came before the listener closed): the
    // streams its client sent with the preface are served, then GOAWAY.
    if (closing) s.once("stream", () => setImmediate(() => s.close()));
    // Like HTTP/1.1's keepAliveTimeout: a session may not sit without streams forever.
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    s.on("stream", (stream) => {
      if (open++ === 0) clearTimeout(idle);
      if (socket !== undefined) headArrived(socket);
      stream.once("close", () => {
        if (--open > 0 || s.destroyed) return;
        idle = setTimeout(() => s.close(), keepAlive);
      });
    });
    s.on("close", () => {
      clearTimeout(idle);
      sessions.delete(s);
    });
    s.on("error", () => {});
  });

  const perAddress = new Map<string, number>();
  /** Counts the socket under its address; false when that address is at the cap. */
  const admit = (socket: Socket): boolean => {
    if (maxPerAddress <= 0) return true;
    const address = socket.remoteAddress;
    if (address === undefined) return false; // already gone
    const key = opts.connectionKey ? opts.connectionKey(address) : address;
    if (key === undefined) return true;
    const n = perAddress.get(key) ?? 0;
    if (n >= maxPerAddress) return false;
    perAddress.set(key, n + 1);
    socket.once("close", () => {
      const left = (perAddress.get(key) ?? 1) - 1;
      if (left === 0) perAddress.delete(key);
      else perAddress.set(key, left);
    });
    return true;
  };

  const sockets = new Set<Socket>();
  /**
   * Accepted sockets that have not sent a byte: idle, yet unknown to both inner servers (their
   * closeIdleConnections never sees them; undici opens such spare connections).
   */
  const silent = new Set<Socket>();
  const net = createNet({ noDelay: true, keepAlive: true }, (socket) => {
    socket.on("error", () => socket.destroy());
    if (!admit(socket)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    silent.add(socket);
    firstHead.set(
      socket,
      setTimeout(() => socket.destroy(), headersTimeout),
    );
    socket.on("close", () => {
      headArrived(socket);
      sockets.delete(socket);
      silent.delete(socket);
    });
    let seen: Buffer = Buffer.alloc(0);
    const onData = (data: Buffer): void => {
      silent.delete(socket);
      seen = seen.length === 0 ? data : Buffer.concat([seen, data]);
      if (seen.length < PREFACE.length && PREFACE.subarray(0, seen.length).equals(seen)) return;
      socket.off("data", onData);
      socket.pause();
      socket.unshift(seen);
      if (seen.subarray(0, PREFACE.length).equals(PREFACE)) {
        // http2 reads the buffered bytes itself, then the native handle: no resume here.
        handing = socket;
        h2.emit("connection", socket);
        handing = undefined;
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        net.once("error", reject);
        net.listen(port, host, () => {
          net.off("error", reject);
          h1.emit("listening");
          h2.emit("listening");
          resolve(net.address() as AddressInfo);
        });
      });
    },
    async close(graceMs, { onDeadline, hurry } = {}) {
      closing = true;
      const closed = new Promise<void>((r) => net.close(() => r()));
      for (const socket of sockets) closeAfterAnswer(socket as Http1Socket);
      for (const s of sessions) s.close();
      const grace = new AbortController();
      const timer = setTimeout(() => grace.abort(), graceMs);
      const onHurry = (): void => grace.abort();
      hurry?.addEventListener("abort", onHurry, { once: true });
      if (hurry?.aborted) grace.abort();
      // Idle connections are closed between requests only: each sweep runs after a poll phase
      // (a timer, then setImmediate), so bytes a client already sent on a connection have been
      // read and made it busy; destroying it then would reset a request (issue 19).
      while (sockets.size > 0 && !grace.signal.aborted) {
        await sleep(IDLE_SWEEP_MS);
        await afterPoll();
        h1.closeIdleConnections();
        for (const s of silent) s.destroy();
      }
      clearTimeout(timer);
      hurry?.removeEventListener("abort", onHurry);
      if (sockets.size > 0) {
        onDeadline?.();
        const flushBy = Date.now() + CUT_FLUSH_MS;
        while (sockets.size > 0 && Date.now() < flushBy) await sleep(IDLE_SWEEP_MS);
        for (const s of sockets) s.destroy();
      }
      await closed;
    },
    stats: () => ({ sockets: sockets.size, sessions: sessions.size, addresses: perAddress.size }),
  };
}

const ignore = (): void => {};

/**
 * Node hands every request with `Connection: upgrade` to the `upgrade` listener once there is
 * one, parser detached: one the relay does not upgrade is written back in front of the socket
 * without its `Upgrade` header (hop-by-hop, never forwarded anyway) and the socket given to the
 * HTTP/1.1 server again, so it is answered (and the connection kept) as before.
 */
function replayAsPlainRequest(h1: ReturnType<typeof createHttp1>, req: IncomingMessage, socket: Socket, head: Buffer): void {
  const lines = [`${req.method ?? "GET"} ${req.url ?? "/"} HTTP/${req.httpVersion}`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() !== "upgrade") lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  socket.pause();
  socket.unshift(Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), head]));
  h1.emit("connection", socket);
  socket.resume();
}

/**
 * An HTTP/1.1 answer in progress ends its connection: with `Connection: close` when its head is
 * not out yet, else (a stream) by closing right after its last byte, as Node does for a
 * `Connection: close` answer (`_last`, read when the response finishes).
 */
function closeAfterAnswer(socket: Http1Socket): void {
  const res = socket._httpMessage;
  if (!res || res.writableEnded) return;
  if (!res.headersSent) res.setHeader("connection", "close");
  else res._last = true;
}

/**
 * HTTP/1.1's requestTimeout for an h2c stream: a request body that has not ended `ms` after
 * its headers is cut, with a 408 when no response has started (as Node answers on HTTP/1.1).
 */
function bodyDeadline(req: Http2ServerRequest, ms: number): void {
  const stream = req.stream;
  const timer = setTimeout(() => {
    // remoteClose: the client's END_STREAM arrived (whether or not the handler read it all).
    if (stream.closed || stream.destroyed || stream.state.remoteClose === 1) return;
    // Fail the request before the stream goes: a stream closed under it ends the request
    // cleanly, and a handler would act on a truncated body. Its readers have an `error`
    // listener; this one keeps a request nobody reads from throwing.
    req.on("error", ignore);
    req.destroy(Object.assign(new Error("request body not received in time"), { code: "ERR_HTTP_REQUEST_TIMEOUT" }));
    if (!stream.headersSent) stream.respond({ ":status": 408 }, { endStream: true });
    // After a complete response NO_ERROR only asks the client to stop sending (RFC 9113 8.1).
    // Closing now also makes the handler's own late writes no-ops.
    stream.close(stream.writableEnded ? constants.NGHTTP2_NO_ERROR : constants.NGHTTP2_CANCEL);
  }, ms);
  stream.once("close", () => clearTimeout(timer));
}
