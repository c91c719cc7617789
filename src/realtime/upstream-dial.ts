/**
 * Dials the provider's WebSocket for a session (issue 25): the client's URL below the provider
 * root with the real key in the provider's style (src/relay/upstream-url.ts, headers.ts), no
 * subprotocol, and a watch on the TCP (or TLS) connection: once it is up
 * the handshake goes out and the call counts; before, a failure is refunded (DESIGN 3.3).
 */
import { connect as netConnect, createConnection, isIP, type NetConnectOpts, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import WebSocket from "ws";
import { RelayError } from "../errors.js";
import type { ProviderSpec } from "../providers/types.js";
import { upstreamHeaders, type HeaderInput } from "../relay/headers.js";
import { upstreamUrl } from "../relay/upstream-url.js";
import { DPOP_QUERY_PARAM } from "./session-credentials.js";

export interface DialOptions {
  provider: ProviderSpec;
  path: string;
  query: URLSearchParams;
  headers: HeaderInput;
  /** Headers the relay adds when the client did not send them (from its subprotocols). */
  extraHeaders: Record<string, string>;
  key: string;
  maxPayload: number;
  handshakeTimeoutMs: number;
  /** The connection to the provider is up: its handshake is about to be written. */
  onConnected(): void;
}

export interface Dialled {
  socket: WebSocket;
  /** The provider's HTTP status when it answered the handshake with something else than 101. */
  status(): number | undefined;
  /** The provider did not answer the handshake within handshakeTimeoutMs. */
  timedOut(): boolean;
}

/**
 * The longest a provider may take to answer the WebSocket handshake (or upstreamHeadersTimeoutMs
 * when shorter). Providers answer it at once; the HTTP layer's headers timeout (10 min by
 * default: a model may think that long before its first byte) would hold a client, its slot and
 * its key for nothing.
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export function dialUpstream(o: DialOptions): Dialled {
  const query = new URLSearchParams(o.query);
  query.delete(DPOP_QUERY_PARAM);
  const url = upstreamUrl(o.provider, o.path, query, o.key);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const headers = { ...o.extraHeaders, ...upstreamHeaders(o.headers, o.provider, o.key) };
  delete headers["accept-encoding"];
  const secure = url.protocol === "wss:";
  const socket = new WebSocket(url, {
    headers,
    maxPayload: o.maxPayload,
    perMessageDeflate: false,
    handshakeTimeout: Math.min(o.handshakeTimeoutMs, HANDSHAKE_TIMEOUT_MS),
    followRedirects: false,
    createConnection: watchedConnector(secure, o.onConnected),
  });
  let status: number | undefined;
  let timedOut = false;
  socket.on("error", (e: Error) => {
    const m = /^Unexpected server response: (\d{3})$/.exec(e.message);
    if (m) status = Number(m[1]);
    // ws's words for its handshakeTimeout (lib/websocket.js).
    else if (e.message === "Opening handshake has timed out") timedOut = true;
  });
  return { socket, status: () => status, timedOut: () => timedOut };
}

/** ws's own connectors (lib/websocket.js netConnect, tlsConnect), with the connection watched. */
function watchedConnector(secure: boolean, onConnected: () => void): typeof createConnection {
  const connector = (opts: NetConnectOpts & ConnectionOptions & { socketPath?: string }): Socket => {
    let s: Socket;
    if (secure) {
      const servername = opts.servername ?? (isIP(opts.host ?? "") ? "" : opts.host);
      s = tlsConnect({ ...opts, path: undefined, ...(servername === undefined ? {} : { servername }) });
      s.once("secureConnect", onConnected);
    } else {
      s = netConnect({ ...opts, path: opts.socketPath } as NetConnectOpts);
      s.once("connect", onConnected);
    }
    return s;
  };
  return connector as typeof createConnection;
}

/** What the client is told when the provider's handshake failed. */
export function refusalOf(status: number | undefined, timedOut = false): RelayError {
  if (status === undefined && timedOut) return new RelayError("upstream_timeout", "upstream did not answer the session's handshake in time");
  if (status === undefined) return new RelayError("upstream_unreachable", "upstream unreachable");
  if (status === 429) return new RelayError("rate_limited", "upstream refused the session: rate limited");
  return new RelayError("upstream_unreachable", `upstream refused the session (${status})`);
}
