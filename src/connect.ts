/** The one wiring file: every Connect service, each built by its factory from its deps. */
import type { ConnectRouter } from "@connectrpc/connect";
import { AdminService } from "../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { createAdminService, type AdminServiceDeps } from "./services/admin-service.js";
import { parseErrorsAsInvalidArgument } from "./services/parse-errors.js";
import { registerReflection } from "./services/reflection-service.js";
import { createRelayService, type RelayServiceDeps } from "./services/relay-service.js";
import { createTokenService, type TokenServiceDeps } from "./services/token-service.js";

export type ServiceDeps = TokenServiceDeps & AdminServiceDeps & RelayServiceDeps;

export const SERVICES = [TokenService, AdminService, RelayService] as const;

export function routes(deps: ServiceDeps): (router: ConnectRouter) => void {
  return (router) => {
    router.service(TokenService, createTokenService(deps));
    router.service(AdminService, createAdminService(deps));
    router.service(RelayService, createRelayService(deps));
    registerReflection(router, SERVICES);
    // A malformed binary request is the caller's error (invalid_argument), not an internal one.
    router.handlers.forEach((h, i) => (router.handlers[i] = parseErrorsAsInvalidArgument(h)));
  };
}
