/**
 * The HTTP compatibility layer: `/api/<provider>/<rest>` -> `<provider base URL>/<rest>`, so
 * official SDKs work unchanged with `baseURL = http://relay/api/<provider>/...` (DESIGN 5).
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { toRelayError } from "../errors.js";
import type { Logger } from "../log.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { RelayEngine } from "../relay/engine.js";
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
  maxBodyBytes: number;
  log: Logger;
}

export type ApiHandler = (req: IncomingMessage | Http2ServerRequest, res: AnyResponse, pathname: string, search: string) => Promise<void>;

export function createApiHandler(deps: ApiRouteDeps): ApiHandler {
  const { engine, providers, cors, maxBodyBytes, log } = deps;
  return async function handleApi(req, res, pathname, search) {
    const rest = pathname.slice(API_PREFIX.length);
    const slash = rest.indexOf("/");
    const providerId = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? "/" : rest.slice(slash);
    const shape = providers.get(providerId)?.shape ?? openaiShape;
    const origin = req.headers.origin;
    if (req.method === "OPTIONS") {
      cors.preflight(origin, header(req.headers["access-control-request-headers"]), res);
      return;
    }
    const corsHeaders = cors.headersFor(origin);
    const ac = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) ac.abort();
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
          origin,
          signal: ac.signal,
        },
        new HttpSink(res, corsHeaders, shape),
      );
    } catch (e) {
      const err = toRelayError(e);
      if (err.code === "internal") log.error("relay failed", { err: e, path: pathname });
      sendError(res, err, shape, corsHeaders);
    }
  };
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
