/**
 * What a WebSocket upgrade must pass before the 101 (issue 25), and how a refusal is answered:
 * a plain HTTP response with the provider-shaped JSON body (src/http/render-error.ts), written
 * on the raw socket, which then closes. Nothing reaches the provider for a refused upgrade.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { RelayError } from "../errors.js";
import { sendError } from "../http/render-error.js";
import type { ApiShape, ProviderSpec } from "../providers/types.js";
import { pathAllowed } from "../relay/token-policy.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import type { RealtimeFraming } from "./framing.js";

/** RFC 6455 4.2.1: a base64 16-byte nonce; versions ws speaks. */
const KEY = /^[+/0-9A-Za-z]{22}==$/;
const VERSIONS = new Set(["13", "8"]);
/** An RFC 7230 token: what a subprotocol may be (ws refuses anything else). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The handshake headers ws would refuse: checked first, so a handshake that passes the relay's
 * checks is always accepted by ws (whose own refusal would leave a counted call behind).
 */
export function checkHandshake(req: IncomingMessage, protocols: readonly string[]): void {
  const key = req.headers["sec-websocket-key"];
  const version = req.headers["sec-websocket-version"];
  if (typeof key !== "string" || !KEY.test(key) || typeof version !== "string" || !VERSIONS.has(version)) {
    throw new RelayError("bad_request", "invalid WebSocket handshake");
  }
  if (req.method !== "GET" || req.headers.upgrade?.toLowerCase() !== "websocket") {
    throw new RelayError("bad_request", "invalid WebSocket handshake");
  }
  // The raw header as ws parses it: `protocols` is the cleaned list, and ws refuses an empty
  // header or an empty entry (`realtime,`, `a,,b`) that the list no longer shows.
  const raw = req.headers["sec-websocket-protocol"];
  const entries = raw === undefined ? [] : raw.split(",").map((p) => p.trim());
  if (!entries.every((p) => TOKEN.test(p)) || !protocols.every((p) => TOKEN.test(p)) || new Set(entries).size !== entries.length) {
    throw new RelayError("bad_request", "invalid WebSocket subprotocol");
  }
}

/**
 * The token's pins that an upgrade can be checked against: provider, path prefixes, browser
 * origin, and (where the query names it: OpenAI) the model. Returns the model the session
 * runs on when the query names it.
 */
export function checkSessionPolicy(
  token: TokenMeta,
  provider: ProviderSpec,
  framing: RealtimeFraming,
  path: string,
  origin: string | undefined,
  query: URLSearchParams,
): string | undefined {
  if (token.provider !== provider.id) throw new RelayError("permission_denied", "token not valid for this provider");
  if (token.paths.length > 0 && !token.paths.some((p) => pathAllowed(path, p))) {
    throw new RelayError("permission_denied", "path not allowed for this token");
  }
  // As on the HTTP layer (src/relay/token-policy.ts): a browser's Origin must be pinned; a server
  // client sends none.
  if (token.origins.size > 0 && origin !== undefined && !token.origins.has(origin)) {
    throw new RelayError("permission_denied", "origin not allowed for this token");
  }
  const models = framing.queryModels(query);
  if (token.models.size > 0 && !framing.modelInFirstMessage && (models.length === 0 || !models.every((m) => token.models.has(m)))) {
    throw new RelayError("permission_denied", "model not allowed for this token");
  }
  return models[0];
}

/** Answers a refused upgrade as HTTP, in the provider's error shape, and closes the socket. */
export function refuseUpgrade(req: IncomingMessage, socket: Socket, err: RelayError, shape: ApiShape): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const res = new ServerResponse(req);
  res.assignSocket(socket);
  res.shouldKeepAlive = false;
  res.on("finish", () => {
    res.detachSocket(socket);
    socket.end();
  });
  sendError(res, err, shape);
}
