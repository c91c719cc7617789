/**
 * Routing by path on the one port: `/api/<provider>/*` (the HTTP layer), `/v1/leaked-tokens`,
 * the health and metrics endpoints, the console, a browser at `/` sent to the console, and
 * everything else to the Connect routes, behind their CORS (src/services/rpc-handler.ts).
 * Answers of the API, the leak report and the RPCs are counted (src/observe/answer-counter.ts).
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { Logger } from "../log.js";
import type { AnswerCounter } from "../observe/answer-counter.js";
import type { Handler } from "../one-port.js";
import type { RpcHandler } from "../services/rpc-handler.js";
import type { UnaryFastLane } from "../services/unary-fast-lane.js";
import { API_PREFIX, type ApiHandler } from "./api-route.js";
import { isConsolePath, type ConsoleHandler } from "./console-route.js";
import type { Cors } from "./cors.js";
import { healthz, readyz, type ReadinessDeps } from "./health.js";
import { LEAKED_TOKENS_PATH } from "./leaked-tokens.js";
import { serveMetrics, type MetricsSource } from "./metrics-route.js";
import type { AnyResponse } from "./render-error.js";

export interface RouterDeps {
  api: ApiHandler;
  leaks: (req: IncomingMessage | Http2ServerRequest, res: AnyResponse) => Promise<void>;
  console: ConsoleHandler;
  readiness: ReadinessDeps;
  metrics: MetricsSource;
  cors: Cors;
  rpc: RpcHandler;
  /** Takes the plain Connect unary calls it answers itself (unary-fast-lane.ts); the rest go to `rpc`. */
  rpcFast?: UnaryFastLane;
  answers: AnswerCounter;
  log: Logger;
}

export function createRouter(deps: RouterDeps): Handler {
  const { answers } = deps;
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q === -1 ? url : url.slice(0, q);
    if (pathname.startsWith(API_PREFIX)) {
      answers.track("http", req, res);
      void deps.api(req, res, pathname, q === -1 ? "" : url.slice(q));
    } else if (pathname === LEAKED_TOKENS_PATH) {
      answers.track("http", req, res);
      void deps.leaks(req, res);
    } else if (pathname === "/healthz") {
      healthz(res);
    } else if (pathname === "/readyz") {
      void readyz(res, deps.readiness);
    } else if (pathname === "/metrics") {
      void serveMetrics(res, deps.metrics, deps.log);
    } else if (isConsolePath(pathname)) {
      void deps.console(req, res, pathname);
    } else if (pathname === "/" && (req.method === "GET" || req.method === "HEAD")) {
      // A browser opening the relay's root lands on the console rather than a JSON 404.
      res.writeHead(302, { location: "/console", "content-length": 0, "cache-control": "no-store" });
      res.end();
    } else if (!deps.cors.rpc(req, res)) {
      answers.track("rpc", req, res);
      if (deps.rpcFast === undefined || !deps.rpcFast(req, res, pathname)) deps.rpc(req, res, pathname);
    }
  };
}
