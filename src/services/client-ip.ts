/**
 * The client IP of an RPC as a context value (set from the socket and trusted proxies by the
 * server), and the interceptor that applies the per-IP limit before any handler or credential
 * check runs, as the HTTP layer does.
 */
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Limits } from "../limits/limits.js";

export const kClientIp = createContextKey<string>("unknown", { description: "client IP address" });

export function ipLimitInterceptor(limits: Limits): Interceptor {
  return (next) => async (req) => {
    await limits.checkIp(req.contextValues.get(kClientIp));
    return next(req);
  };
}
