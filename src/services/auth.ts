/**
 * Who may call what. AdminService and TokenService's admin rpcs need the admin key as a bearer
 * token; RelayService, IntrospectToken, GetQuota, GetSealingKey and reflection authenticate otherwise
 * (with the relay token itself, or not at all for public data).
 *
 * The key is checked twice on the server: from the request headers by the RPC front door
 * (src/services/rpc-gate.ts), before connect-node reads a byte of the body, and again by the
 * interceptor below, which also covers routes reached another way (in-process transports).
 */
import type { DescService } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { RelayError } from "../errors.js";
import { bearerCredential, relayTokenFrom } from "../http/token-carrier.js";
import { secretsEqual } from "../keys/key-files.js";

const PUBLIC_METHODS = new Set([
  "relayapi.v1.RelayService/Relay",
  "relayapi.v1.TokenService/IntrospectToken",
  "relayapi.v1.TokenService/GetQuota",
  "relayapi.v1.TokenService/GetSealingKey",
]);
const PUBLIC_SERVICES = new Set(["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);

/** Whether `service/method` may be called without the admin key. */
export function isPublicMethod(service: string, method: string): boolean {
  return PUBLIC_SERVICES.has(service) || PUBLIC_METHODS.has(`${service}/${method}`);
}

/** The request paths (`/<service>/<method>`) of every method of `services` that needs the admin key. */
export function adminOnlyPaths(services: readonly DescService[]): ReadonlySet<string> {
  const paths = new Set<string>();
  for (const s of services) for (const m of s.methods) if (!isPublicMethod(s.typeName, m.name)) paths.add(`/${s.typeName}/${m.name}`);
  return paths;
}

/** The relay token an RPC carries: the one extractor of every entry point (src/http/token-carrier.ts). */
export function bearerOf(headers: Headers): string | undefined {
  return relayTokenFrom(headers);
}

/** Whether an `Authorization` header value carries the admin key (compared in constant time). */
export function isAdminAuthorization(authorization: string | undefined, adminKey: string): boolean {
  const presented = bearerCredential(authorization);
  return presented !== undefined && secretsEqual(presented, adminKey);
}

/** Rendered by the one RPC mapping (src/services/errors.ts), as every other refusal. */
export const adminKeyRequired = (): RelayError => new RelayError("unauthenticated", "admin key required");

export function adminAuthInterceptor(adminKey: string): Interceptor {
  return (next) => async (req) => {
    if (!isPublicMethod(req.service.typeName, req.method.name) && !isAdminAuthorization(req.header.get("authorization") ?? undefined, adminKey)) {
      throw adminKeyRequired();
    }
    return next(req);
  };
}
