/**
 * Who may call what. AdminService and TokenService's admin rpcs need the admin key as a bearer
 * token; RelayService, IntrospectToken, GetSealingKey and reflection authenticate otherwise
 * (with the relay token itself, or not at all for public data).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { secretsEqual } from "../keys/key-files.js";

const PUBLIC_METHODS = new Set([
  "relayapi.v1.RelayService/Relay",
  "relayapi.v1.TokenService/IntrospectToken",
  "relayapi.v1.TokenService/GetSealingKey",
]);
const PUBLIC_SERVICES = new Set(["grpc.reflection.v1.ServerReflection"]);

export function bearerOf(headers: Headers): string | undefined {
  const auth = headers.get("authorization");
  if (!auth || auth.length <= 7 || auth.slice(0, 7).toLowerCase() !== "bearer ") return undefined;
  return auth.slice(7).trim();
}

export function adminAuthInterceptor(adminKey: string): Interceptor {
  return (next) => async (req) => {
    const service = req.service.typeName;
    if (!PUBLIC_SERVICES.has(service) && !PUBLIC_METHODS.has(`${service}/${req.method.name}`)) {
      const presented = bearerOf(req.header);
      if (presented === undefined || !secretsEqual(presented, adminKey)) {
        throw new ConnectError("admin key required", Code.Unauthenticated);
      }
    }
    return next(req);
  };
}
