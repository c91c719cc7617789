/**
 * Typed Connect clients of the relay's three services over connect-web's transport, which runs
 * in browsers and in Node 20+ (global fetch). A relay token authenticates RelayService.Relay,
 * TokenService.IntrospectToken and TokenService.GetQuota; an admin key the rest.
 */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";

export interface RelayClientOptions {
  /** The relay's root URL, e.g. `https://relay.example.com`. */
  baseUrl: string;
  /** A relay token (issued or sealed): for Relay and IntrospectToken. */
  token?: string;
  /** An admin key: for AdminService and TokenService's admin rpcs. */
  adminKey?: string;
  /** A fetch to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
  /** Protobuf binary instead of JSON on the wire. */
  useBinaryFormat?: boolean;
}

export interface RelayClients {
  tokens: Client<typeof TokenService>;
  admin: Client<typeof AdminService>;
  relay: Client<typeof RelayService>;
}

/** Methods the relay authenticates with the relay token rather than the admin key. */
const TOKEN_METHODS = new Set(["relayapi.v1.RelayService/Relay", "relayapi.v1.TokenService/IntrospectToken", "relayapi.v1.TokenService/GetQuota"]);

export function createRelayClients(opts: RelayClientOptions): RelayClients {
  if (!/^https?:\/\//.test(opts.baseUrl)) throw new TypeError("baseUrl must be an http(s) URL");
  const auth: Interceptor = (next) => (req) => {
    const byToken = TOKEN_METHODS.has(`${req.service.typeName}/${req.method.name}`);
    const bearer = byToken ? (opts.token ?? opts.adminKey) : (opts.adminKey ?? opts.token);
    if (bearer !== undefined && !req.header.has("authorization")) req.header.set("authorization", `Bearer ${bearer}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: opts.baseUrl.replace(/\/+$/, ""),
    interceptors: [auth],
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
    ...(opts.useBinaryFormat ? { useBinaryFormat: true } : {}),
  });
  return {
    tokens: createClient(TokenService, transport),
    admin: createClient(AdminService, transport),
    relay: createClient(RelayService, transport),
  };
}
