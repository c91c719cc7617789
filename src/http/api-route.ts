/**
 * The HTTP compatibility layer: `/api/<provider>/<rest>` -> `<provider base URL>/<rest>`, so
 * official SDKs work unchanged with `baseURL = http://relay/api/<provider>/...` (DESIGN 5).
 *
 * Every answer carries the request's id: the client's own `x-request-id` when it is sane, else a
 * new UUID, in `x-request-id`, or in `x-relay-request-id` when the provider's answer has an
 * `x-request-id` of its own (which passes through). The id is in the request's log lines and
 * the engine's CallRecord.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { toRelayError } from "../errors.js";
import type { Limits } from "../limits/limits.js";
import type { Logger } from "../log.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { RelayEngine } from "../relay/engine.js";
import { ClientAbort } from "./client-abort.js";
import type { Cors } from "./cors.js";
import { HttpSink } from "./http-sink.js";
import { readBody } from "./read-body.js";
import { sendError, type AnyResponse } from "./render-error.js";
import { tokenFromRequest } from "./token-carrier.js";

export const API_PREFIX = "/api/";

export interface ApiRouteDeps {
  engine: RelayEngine;
  providers: ProviderRegistry;
  cors: Cors;
  limits: Limits;
  /** The client's address: the socket's, or X-Forwarded-For's through trusted proxies. */
  ipOf: (req: IncomingMessage | Http2ServerRequest) => string;
  maxBodyBytes: number;
  log: Logger;
}

export type ApiHandler = (req: IncomingMessage | Http2ServerRequest, res: AnyResponse, pathname: string, search: string) => Promise<void>;

export function createApiHandler(deps: ApiRouteDeps): ApiHandler {
  const { engine, providers, cors, limits, ipOf, maxBodyBytes, log } = deps;
  return async function handleApi(req, res, pathname, search) {
    const rest = pathname.slice(API_PREFIX.length);
    const slash = rest.indexOf("/");
    const providerId = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? "/" : rest.slice(slash);
    const shape = providers.get(providerId)?.shape ?? openaiShape;
    const origin = req.headers.origin;
    const requestId = requestIdOf(req.headers["x-request-id"]);
    const corsHeaders = { ...cors.headersFor(origin), "x-request-id": requestId };
    // Per IP first, before the token is looked at: bad tokens are limited too.
    try {
      await limits.checkIp(ipOf(req));
    } catch (e) {
      sendError(res, toRelayError(e), shape, corsHeaders);
      return;
    }
    if (req.method === "OPTIONS") {
      res.setHeader("x-request-id", requestId);
      cors.preflight(origin, header(req.headers["access-control-request-headers"]), res);
      return;
    }
    const gone = new ClientAbort();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const body = await readBody(req, maxBodyBytes);
      const query = search.length > 1 ? new URLSearchParams(search) : undefined;
      await engine.relay(
        {
          providerId,
          method: req.method ?? "GET",
          path,
          query,
          headers: req.headers,
          body,
          token: tokenFromRequest(req.headers, query),
          dpop: { proof: header(req.headers.dpop), method: req.method ?? "GET", path: pathname },
          origin,
          signal: gone,
          requestId,
        },
        new HttpSink(res, corsHeaders, shape),
      );
    } catch (e) {
      const err = toRelayError(e);
      if (err.code === "internal") log.error("relay failed", { err: e, requestId, path: pathname.slice(0, 256) });
      else log.debug("request refused", { requestId, provider: providerId.slice(0, 64), status: err.status, code: err.code });
      sendError(res, err, shape, corsHeaders);
    }
  };
}

/** Ids a client may choose: short, and safe in a header and a log line. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

function requestIdOf(incoming: string | string[] | undefined): string {
  return typeof incoming === "string" && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
