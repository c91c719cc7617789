/**
 * The client IP of an RPC as a context value (set from the socket and trusted proxies by the
 * server), and the interceptor that applies the per-IP limit before any handler or credential
 * check runs, as the HTTP layer does.
 *
 * On the server the limit is applied earlier still, by the RPC front door (rpc-gate.ts), before
 * connect-node reads the body; the interceptor is the second line for calls that did not pass
 * that door (in-process transports), and skips calls that did, so no call is counted twice.
 */
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Limits } from "../limits/limits.js";

export const kClientIp = createContextKey<string>("unknown", { description: "client IP address" });

/** True when the per-IP limit was already applied to this call, before its body was read. */
export const kIpChecked = createContextKey<boolean>(false, { description: "per-IP limit applied" });

export function ipLimitInterceptor(limits: Limits): Interceptor {
  return (next) => async (req) => {
    if (!req.contextValues.get(kIpChecked)) await limits.checkIp(req.contextValues.get(kClientIp));
    return next(req);
  };
}
