/**
 * The Connect routes as one HTTP handler: the front door (rpc-gate.ts: per-IP limit, admin key
 * and body budget before a byte of the body is read), then connect-node's adapter with every
 * service (src/connect.ts), the interceptors (the one error mapping first, so it sees what the
 * others throw) and the context values each call carries (client IP, its Answer).
 */
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { routes, SERVICES, type ServiceDeps } from "../connect.js";
import { TIMER_MAX_MS } from "../config.js";
import { RelayError } from "../errors.js";
import { relayErrorShape, sendError, type AnyResponse } from "../http/render-error.js";
import type { Logger } from "../log.js";
import { answerOf, kAnswer } from "../observe/answer-counter.js";
import { adminAuthInterceptor, adminOnlyPaths } from "./auth.js";
import { ACCEPT_COMPRESSION } from "./compression.js";
import { ipLimitInterceptor, kClientIp, kIpChecked } from "./ip-limit-interceptor.js";
import { errorInterceptor } from "./errors.js";
import { createRpcGate, headerText, type FrontDoorDeps } from "./rpc-gate.js";
import { negotiationError } from "./rpc-negotiation.js";

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
  // The router's handlers, by path: a request none of their protocols takes is refused with a
  // JSON answer before the adapter (rpc-negotiation.ts).
  const handlers = new Map<string, UniversalHandler>();
  const adapter = connectNodeAdapter({
    routes: (router) => {
      routes(deps.services)(router);
      for (const h of router.handlers) handlers.set(h.requestPath, h);
    },
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
    Promise.resolve(gate.admit(req, res, pathname))
      .then((admitted) => {
        if (!admitted) return;
        const handler = handlers.get(pathname);
        const refused = handler && negotiationError(handler, req.method ?? "", headerText(req.headers["content-type"]) ?? "");
        if (refused) sendError(res, refused, relayErrorShape);
        else {
          dropEndlessDeadline(req);
          adapter(req, res);
        }
      })
      .catch((e: unknown) => {
        deps.log.error("rpc front door failed", { err: e });
        res.destroy();
      });
  };
}

/**
 * A deadline longer than a timer holds is no deadline: connect-node's timer would fire after
 * 1 ms and end the call at once, counted and sent (grpc-go encodes its longest deadline as
 * `99999999H`). Read with connect's own parsers, bounded by what a timer holds: past it, the
 * header goes, and the relay's own bounds apply as for a call without one.
 */
function dropEndlessDeadline(req: AnyRequest): void {
  for (const [name, parse] of DEADLINE_HEADERS) {
    const value = headerText(req.headers[name]);
    if (value === undefined) continue;
    const { timeoutMs, error } = parse(value, TIMER_MAX_MS);
    if (timeoutMs !== undefined && error !== undefined) delete req.headers[name];
  }
}

const DEADLINE_HEADERS = [
  ["grpc-timeout", parseGrpcTimeout],
  ["connect-timeout-ms", parseConnectTimeout],
] as const;
