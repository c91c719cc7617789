/**
 * The Connect routes as one HTTP handler: the front door (rpc-gate.ts: per-IP limit, admin key
 * and body budget before a byte of the body is read), then connect-node's adapter with every
 * service (src/connect.ts), the interceptors (the one error mapping first, so it sees what the
 * others throw) and the context values each call carries (client IP, its Answer).
 */
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { routes, SERVICES, type ServiceDeps } from "../connect.js";
import { RelayError } from "../errors.js";
import { relayErrorShape, sendError, type AnyResponse } from "../http/render-error.js";
import type { Logger } from "../log.js";
import { answerOf, kAnswer } from "../observe/answer-counter.js";
import { adminAuthInterceptor, adminOnlyPaths } from "./auth.js";
import { ACCEPT_COMPRESSION } from "./compression.js";
import { ipLimitInterceptor, kClientIp, kIpChecked } from "./ip-limit-interceptor.js";
import { errorInterceptor } from "./errors.js";
import { createRpcGate, type FrontDoorDeps } from "./rpc-gate.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;

export interface RpcHandlerDeps extends FrontDoorDeps {
  services: ServiceDeps;
  log: Logger;
}

/** Serves one request on the Connect routes (`pathname` without the query). */
export type RpcHandler = (req: AnyRequest, res: AnyResponse, pathname: string) => void;

export function createRpcHandler(deps: RpcHandlerDeps): RpcHandler {
  const { limits, ipOf, adminKey, budget, maxBodyBytes } = deps;
  const gate = createRpcGate({ limits, ipOf, adminKey, adminOnly: adminOnlyPaths(SERVICES), budget, maxBodyBytes });
  const adapter = connectNodeAdapter({
    routes: routes(deps.services),
    interceptors: [errorInterceptor(deps.log), ipLimitInterceptor(limits), adminAuthInterceptor(adminKey)],
    contextValues: (req) => {
      const checked = gate.checkedIp(req);
      return createContextValues()
        .set(kClientIp, checked ?? ipOf(req))
        .set(kIpChecked, checked !== undefined)
        .set(kAnswer, answerOf(req));
    },
    readMaxBytes: maxBodyBytes,
    acceptCompression: ACCEPT_COMPRESSION,
    fallback: (_req, res) => sendError(res as AnyResponse, new RelayError("not_found", "not found"), relayErrorShape),
  });
  return (req, res, pathname) => {
    // Nothing here may reject unhandled: Node ends the process on it (a refusal once threw).
    gate
      .admit(req, res, pathname)
      .then((admitted) => admitted && adapter(req, res))
      .catch((e: unknown) => {
        deps.log.error("rpc front door failed", { err: e });
        res.destroy();
      });
  };
}
