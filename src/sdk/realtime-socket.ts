/**
 * Opens a Realtime WebSocket through the relay with a relay token (issue 25), in a browser or
 * in Node (pass `ws`'s WebSocket): OpenAI Realtime (`/api/openai/v1/realtime?model=…`, Azure's
 * `/api/azure-openai/realtime?deployment=…`) or Gemini Live. The token travels as the
 * `openai-insecure-api-key.<token>` subprotocol, never in the URL (where access logs keep it);
 * the relay answers with the `realtime` subprotocol and dials the provider with the real key.
 *
 *   const ws = openRealtimeSocket({ relayUrl: "https://relay.example", token, model: "gpt-realtime" });
 *   ws.onmessage = (e) => console.log(JSON.parse(e.data).type);
 */

export type RealtimeProvider = "openai" | "azure-openai" | "gemini";

/** What the helper needs of a WebSocket class: the browser's, or `ws`'s in Node. */
export type WebSocketClass<T> = new (url: string, protocols: string[]) => T;

export interface RealtimeSocketOptions<T = WebSocket> {
  /** The relay, `https://relay.example` (a `wss:` session) or `http://…` (`ws:`). */
  relayUrl: string;
  /** A relay token (`rai_…` or a sealed token), never a provider key. */
  token: string;
  /** Default `openai`. */
  provider?: RealtimeProvider;
  /** OpenAI: the model; Azure: the deployment. Gemini names its model in its `setup` message. */
  model?: string;
  /** Gemini Live's API version in the path (default `v1beta`). */
  geminiVersion?: "v1beta" | "v1alpha";
  /** The WebSocket class (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketClass<T>;
}

const KEY_PROTOCOL = "openai-insecure-api-key.";

/** The session's URL on the relay (no credential in it). */
export function realtimeUrl(opts: Pick<RealtimeSocketOptions, "relayUrl" | "provider" | "model" | "geminiVersion">): string {
  if (!/^(?:https?|wss?):\/\//.test(opts.relayUrl)) throw new TypeError("relayUrl must be an http(s) or ws(s) URL");
  const base = opts.relayUrl.replace(/\/+$/, "").replace(/^http/, "ws");
  const provider = opts.provider ?? "openai";
  if (provider === "gemini") {
    return `${base}/api/gemini/ws/google.ai.generativelanguage.${opts.geminiVersion ?? "v1beta"}.GenerativeService.BidiGenerateContent`;
  }
  const query = opts.model === undefined ? "" : `?${provider === "azure-openai" ? "deployment" : "model"}=${encodeURIComponent(opts.model)}`;
  return `${base}/api/${provider}/${provider === "azure-openai" ? "realtime" : "v1/realtime"}${query}`;
}

/** The subprotocols that carry the token: `realtime` (what the relay answers with) and the key. */
export function realtimeProtocols(token: string): string[] {
  if (!/^[A-Za-z0-9._~-]+$/.test(token)) throw new TypeError("token must be a relay token");
  return ["realtime", KEY_PROTOCOL + token];
}

/** A WebSocket to the provider's Realtime API, through the relay. */
export function openRealtimeSocket<T = WebSocket>(opts: RealtimeSocketOptions<T>): T {
  const Socket = opts.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketClass<T> | undefined);
  if (Socket === undefined) throw new TypeError("no WebSocket class: pass one (in Node: `ws`)");
  return new Socket(realtimeUrl(opts), realtimeProtocols(opts.token));
}
