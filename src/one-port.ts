/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2 (h2c, which gRPC needs). Node's
 * `http2.createServer({allowHTTP1})` only mixes the two over TLS (nodejs/node#44887), so a
 * net server peeks at the first bytes: the HTTP/2 connection preface starts with `PRI `.
 *
 * Pitfalls handled (../shared/STACK.md): an `error` listener from the first byte, `noDelay`
 * on the net server (handed-over sockets skip Node's setNoDelay; SSE would stall ~40 ms), and
 * `listening` emitted on the inner servers so their timeouts and connection tracking run.
 */
import { createServer as createHttp1, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from "node:http2";
import { createServer as createNet, type AddressInfo, type Socket } from "node:net";

export type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI ");
/** How long an idle keep-alive connection (HTTP/1.1) or session (h2c) stays open. */
const KEEP_ALIVE_MS = 65_000;

export interface OnePortOptions {
  /** Largest request head (HTTP/1.1); past it the answer is 431. */
  maxHeaderSize?: number;
  /**
   * Time a client has to send a complete request head. It also bounds the wait for a new
   * connection's first bytes (before the protocol is known), so an idle or trickling socket
   * cannot be held open forever (slowloris).
   */
  headersTimeoutMs?: number;
  /** Time a client has to send a whole request, body included (HTTP/1.1). */
  requestTimeoutMs?: number;
  /** How often HTTP/1.1 connections are checked against the two timeouts above. */
  connectionsCheckingIntervalMs?: number;
}

export interface OnePortServer {
  listen(port: number, host: string): Promise<AddressInfo>;
  /** Stops accepting, lets requests finish up to `graceMs`, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

export function createOnePortServer(handler: Handler, opts: OnePortOptions = {}): OnePortServer {
  const headersTimeout = opts.headersTimeoutMs ?? 30_000;
  const h1 = createHttp1(
    {
      maxHeaderSize: opts.maxHeaderSize ?? 16 * 1024,
      requestTimeout: Math.max(opts.requestTimeoutMs ?? 300_000, headersTimeout),
      headersTimeout,
      keepAliveTimeout: KEEP_ALIVE_MS,
      connectionsCheckingInterval: opts.connectionsCheckingIntervalMs ?? 30_000,
    },
    handler,
  );
  const h2 = createHttp2({ maxSessionMemory: 32 }, handler);
  const sessions = new Set<Http2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    // Like HTTP/1.1's headersTimeout and keepAliveTimeout: a session must open a stream (its
    // request headers complete) in time, and may not sit without one forever.
    let open = 0;
    let timer: NodeJS.Timeout | undefined = setTimeout(() => s.destroy(), headersTimeout);
    s.on("stream", (stream) => {
      open++;
      clearTimeout(timer);
      stream.on("close", () => {
        if (--open > 0 || s.destroyed) return;
        clearTimeout(timer);
        timer = setTimeout(() => s.close(), KEEP_ALIVE_MS);
      });
    });
    s.on("close", () => {
      clearTimeout(timer);
      sessions.delete(s);
    });
    s.on("error", () => {});
  });
  const sockets = new Set<Socket>();
  const net = createNet({ noDelay: true, keepAlive: true }, (socket) => {
    sockets.add(socket);
    socket.on("error", () => socket.destroy());
    // Until the protocol is known no inner server watches the socket: bound the wait here.
    const sniffing = setTimeout(() => socket.destroy(), headersTimeout);
    socket.on("close", () => {
      clearTimeout(sniffing);
      sockets.delete(socket);
    });
    let seen: Buffer = Buffer.alloc(0);
    const onData = (data: Buffer): void => {
      seen = seen.length === 0 ? data : Buffer.concat([seen, data]);
      if (seen.length < PREFACE.length && PREFACE.subarray(0, seen.length).equals(seen)) return;
      clearTimeout(sniffing);
      socket.off("data", onData);
      socket.pause();
      socket.unshift(seen);
      if (seen.subarray(0, PREFACE.length).equals(PREFACE)) {
        // http2 reads the buffered bytes itself, then the native handle: no resume here.
        h2.emit("connection", socket);
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
    async close(graceMs) {
      const closed = new Promise<void>((r) => net.close(() => r()));
      h1.closeIdleConnections();
      for (const s of sessions) s.close();
      const deadline = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      const drained = (async () => {
        while (sockets.size > 0) {
          h1.closeIdleConnections();
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      await Promise.all([closed, drained]);
      clearTimeout(deadline);
    },
  };
}
