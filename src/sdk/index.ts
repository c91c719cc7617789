/**
 * `relayapi/sdk`: what app developers import, in Node and in browsers. Mint sealed tokens
 * offline (`sealToken`, `sealTokenForRelay`), point an official provider SDK at the relay
 * (`relayBaseURL`), show a user what is left of their quota (`getQuota`), call the relay's
 * Connect services (`createRelayClients`), hold a proof-of-possession key (`dpopFetch`; in
 * browsers `browserDpopKey`, kept in IndexedDB), and open a Realtime WebSocket through the
 * relay (`openRealtimeSocket`).
 *
 * Built to `dist/` by `npm run build:sdk` (run by `npm ci`'s prepare step); it imports no
 * `node:` module, so bundlers take it as it is.
 */
export { DEFAULT_TTL_SECONDS, newJti, sealToken, sealTokenForRelay, type IssuerKey, type SealedTokenClaims, type SealInput } from "./seal-token.js";
export { relayBaseURL } from "./relay-base-url.js";
export { getQuota, quotaFromJson, QuotaError, type GetQuotaOptions, type Quota, type QuotaWindow } from "./get-quota.js";
export { createRelayClients, type RelayClientOptions, type RelayClients } from "./relay-clients.js";
export { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
export { Outcome, TokenStatus } from "../../gen/relayapi/v1/common_pb.js";
export { RelayService } from "../../gen/relayapi/v1/relay_service_pb.js";
export { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
export { createDpopProof, dpopFetch, generateDpopKeyPair, jwkThumbprint, publicDpopJwk, type DpopKeyPair, type FetchLike } from "./dpop-fetch.js";
export { browserDpopKey, forgetBrowserDpopKey, type BrowserDpopKeyOptions } from "./browser-key.js";
export {
  openRealtimeSocket,
  realtimeProtocols,
  realtimeUrl,
  type RealtimeProvider,
  type RealtimeSocketOptions,
  type WebSocketClass,
} from "./realtime-socket.js";
