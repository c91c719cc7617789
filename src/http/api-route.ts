/**
 * The HTTP compatibility layer: `/api/<provider>/<rest>` -> `<provider base URL>/<rest>`, so
 * official SDKs work unchanged with `baseURL = http://relay/api/<provider>/...` (DESIGN 5).
 *
 * Every answer carries the request's id (src/http/request-id.ts) in `x-request-id`, or in
 * `x-relay-request-id` when the provider's answer has an `x-request-id` of its own (which
 * passes through).
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { JsonValue } from "@bufbuild/protobuf";
import { invalidToken, RelayError, toRelayError } from "../errors.js";
import type { Limits } from "../limits/limits.js";
import type { Logger } from "../log.js";
import { answerOf } from "../observe/answer-counter.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { RelayEngine } from "../relay/engine.js";
import type { BodyReader } from "../relay/types.js";
import type { BodyAccount, BodyBudget } from "./body-budget.js";
import { ClientAbort } from "./client-abort.js";
import type { Cors } from "./cors.js";
import { HttpSink } from "./http-sink.js";
import { discardUnread, openUpload, readBody } from "./read-body.js";
import { sendError, type AnyResponse } from "./render-error.js";
import { requestIdOf } from "./request-id.js";
import { relayTokenFrom } from "./token-carrier.js";

export const API_PREFIX = "/api/";

/**
 * The methods forwarded to a provider; OPTIONS is the relay's own preflight. Anything else Node
 * parses (TRACE, CONNECT, WebDAV's PROPFIND, ...) is no LLM API call and would only carry the
 * real key somewhere unplanned: 405 before anything else is spent on it.
 */
const FORWARDED = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]);
const ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

export interface ApiRouteDeps {
  engine: RelayEngine;
  providers: ProviderRegistry;
  cors: Cors;
  limits: Limits;
  /** The client's address: the socket's, or X-Forwarded-For's through trusted proxies. */
  ipOf: (req: IncomingMessage | Http2ServerRequest) => string;
  maxBodyBytes: number;
  /** Bytes of request bodies held across all requests (DESIGN 3.4). */
  budget: BodyBudget;
  log: Logger;
  /** Answers `GET /api/quota`: the token's quota as GetQuotaResponse JSON (issue 24). */
  quota?: (token: string) => Promise<JsonValue>;
}

/** `/api/quota` below API_PREFIX. */
export const QUOTA_ROUTE = "quota";

async function answerQuota(
  req: IncomingMessage | Http2ServerRequest,
  res: AnyResponse,
  search: string,
  method: string,
  quota: (token: string) => Promise<JsonValue>,
  corsHeaders: Record<string, string>,
): Promise<void> {
  try {
    if (method !== "GET" && method !== "HEAD") throw new RelayError("method_not_allowed", "method not allowed", { headers: { allow: "GET, HEAD, OPTIONS" } });
    const token = relayTokenFrom(req.headers, search.length > 1 ? new URLSearchParams(search) : undefined);
    if (token === undefined || token === "") throw invalidToken();
    const body = JSON.stringify(await quota(token));
    res.writeHead(200, { ...corsHeaders, "content-type": "application/json", "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
    if (method === "HEAD") res.end();
    else res.end(body);
  } catch (e) {
    sendError(res, toRelayError(e), openaiShape, corsHeaders);
  }
}

export type ApiHandler = (req: IncomingMessage | Http2ServerRequest, res: AnyResponse, pathname: string, search: string) => Promise<void>;

export function createApiHandler(deps: ApiRouteDeps): ApiHandler {
  const { engine, providers, cors, limits, ipOf, maxBodyBytes, budget, log } = deps;
  return async function handleApi(req, res, pathname, search) {
    const rest = pathname.slice(API_PREFIX.length);
    const slash = rest.indexOf("/");
    const providerId = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? "/" : rest.slice(slash);
    const shape = providers.get(providerId)?.shape ?? openaiShape;
    const origin = req.headers.origin;
    const requestId = requestIdOf(req.headers["x-request-id"]);
    const corsHeaders = { ...cors.headersFor(origin), "x-request-id": requestId };
    const method = req.method ?? "GET";
    // For the answer's 5xx log line (src/observe/call-observer.ts); the id is sane, the
    // provider id bounded (it is the client's text until the registry knows it).
    const answer = answerOf(res);
    if (answer !== undefined) {
      answer.requestId = requestId;
      answer.provider = providerId.slice(0, 64);
    }
    // Every early answer below leaves the body unread: it is let go once the answer is out.
    if (!FORWARDED.has(method) && method !== "OPTIONS") {
      sendError(res, new RelayError("method_not_allowed", "method not allowed", { headers: { allow: ALLOW } }), shape, corsHeaders);
      discardUnread(req, maxBodyBytes);
      return;
    }
    // Per IP first, before the token is looked at: bad tokens are limited too.
    try {
      // Admitted locally: no promise (src/limits/limits.ts).
      const limited = limits.checkIp(ipOf(req));
      if (limited !== undefined) await limited;
    } catch (e) {
      sendError(res, toRelayError(e), shape, corsHeaders);
      discardUnread(req, maxBodyBytes);
      return;
    }
    if (method === "OPTIONS") {
      res.setHeader("x-request-id", requestId);
      cors.preflight(origin, header(req.headers["access-control-request-headers"]), res);
      discardUnread(req, maxBodyBytes);
      return;
    }
    // The holder's own quota (issue 24): `/api/quota` names no provider (the id is reserved).
    if (rest === QUOTA_ROUTE && deps.quota !== undefined) {
      await answerQuota(req, res, search, method, deps.quota, corsHeaders);
      discardUnread(req, maxBodyBytes);
      return;
    }
    const gone = new ClientAbort();
    // The body's share of the budget, taken by the reader and given back when the request ends.
    let account: BodyAccount | undefined;
    res.on("close", () => {
      account?.release();
      if (!res.writableFinished) gone.abort();
    });
    // The engine calls this only after the token (and DPoP proof) passed: no byte of the body
    // is read, or held, for a client that has no valid token (issue 17).
    const body: BodyReader = (opts) => {
      if (gone.aborted) return Promise.reject(new RelayError("bad_request", "request body incomplete"));
      account = budget.open(maxBodyBytes);
      // An upload streams through, only its head held (issue 25); the engine applies its limits.
      if (opts) return new Promise((resolve) => resolve(openUpload(req, opts.stream, account)));
      return readBody(req, maxBodyBytes, account);
    };
    try {
      const query = search.length > 1 ? new URLSearchParams(search) : undefined;
      await engine.relay(
        {
          providerId,
          method,
          path,
          query,
          headers: req.headers,
          body,
          holdDecoded: (extra) => account?.take(extra),
          token: relayTokenFrom(req.headers, query),
          dpop: { proof: header(req.headers.dpop), method, path: pathname },
          origin,
          signal: gone,
          requestId,
        },
        new HttpSink(res, corsHeaders, shape),
      );
    } catch (e) {
      const err = toRelayError(e);
      if (err.code === "internal") {
        log.error("relay failed", { err: e, requestId, path: pathname.slice(0, 256) });
        if (answer !== undefined) answer.logged = true;
      } else log.debug("request refused", { requestId, provider: providerId.slice(0, 64), status: err.status, code: err.code });
      sendError(res, err, shape, corsHeaders);
    } finally {
      // Refused before (or while) its body was read: the rest goes, the connection stays usable.
      discardUnread(req, maxBodyBytes);
    }
  };
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
