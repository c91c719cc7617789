/**
 * The close codes a relayed WebSocket session ends with (issue 25), documented in the README
 * ("Voice and files"). Codes a provider sends are passed on as they are; these are the relay's.
 * Before a cap closes a session the client gets the provider-shaped error event
 * (src/realtime/framing.ts), so an SDK shows the reason as it shows the provider's own errors.
 */
export const CLOSE = {
  /** The client or the provider ended the session. */
  normal: 1000,
  /** The relay is shutting down: reconnect (to another instance). */
  goingAway: 1001,
  /** A model the token does not allow (or, pinned, a message that is not UTF-8 JSON), or the token was revoked or expired during the session. */
  policy: 1008,
  /** A message larger than the relay's limit (ws closes at the frame header, without an event). */
  tooBig: 1009,
  /** The relay failed (a fault of its own). */
  internal: 1011,
  /** The provider could not be reached, refused or left unanswered the handshake, stopped answering pings, or its connection broke. */
  badGateway: 1014,
  /** The session reached maxSessionSeconds, was idle for sessionIdleMs, or sent no setup in time (Gemini Live). */
  timeLimit: 4408,
  /** The session's LLM-token or dollar reservation (as metered from the provider's usage events) is spent. */
  budget: 4429,
} as const;

/** Codes a peer may send in a close frame (RFC 6455 7.4; 1004-1006 and 1015 never go on the wire). */
export function sendable(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}
