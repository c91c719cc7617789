/**
 * `POST /v1/leaked-tokens` (issue 9): anyone holding a token can kill it in one call, so
 * secret scanners and users need no account. The token proves possession; nothing else is
 * asked. Accepts `{"token": "..."}`, a JSON array of such objects (the shape secret-scanning
 * services send), or text with one token per line. Answers per token with its SHA-256 and
 * whether it was revoked now (`true_positive`), never the token itself.
 *
 * Per-IP limited like every route, but charged per token reported (issue 18): a report of 100
 * tokens cost ~50x a refused request (~34 ms of relay CPU and ~20 ms of PostgreSQL's), so a flood
 * charged per request got 100x the work through the same limit. One unit is taken before the
 * body is read (as on every route), the rest once the tokens are counted. At most MAX_TOKENS
 * tokens per request, and never more than the per-IP burst (a bigger report could never pass).
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { AuditLog } from "../audit/audit-log.js";
import { RelayError, toRelayError } from "../errors.js";
import type { Limits } from "../limits/limits.js";
import type { TokenStore } from "../tokens/token-store.js";
import { readBody } from "./read-body.js";
import { sendError, sendJson, type AnyResponse } from "./render-error.js";

export const LEAKED_TOKENS_PATH = "/v1/leaked-tokens";
const MAX_TOKENS = 100;
const MAX_BODY = 256 * 1024;

export interface LeakDeps {
  tokens: TokenStore;
  limits: Limits;
  audit: AuditLog;
  ipOf: (req: IncomingMessage | Http2ServerRequest) => string;
}

export function createLeakHandler(deps: LeakDeps) {
  return async function handleLeak(req: IncomingMessage | Http2ServerRequest, res: AnyResponse): Promise<void> {
    try {
      const ip = deps.ipOf(req);
      await deps.limits.checkIp(ip);
      if (req.method !== "POST") throw new RelayError("method_not_allowed", "use POST");
      const secrets = parseTokens(await readBody(req, MAX_BODY), Math.min(MAX_TOKENS, deps.limits.ipBurst ?? MAX_TOKENS));
      if (secrets.length > 1 && deps.limits.ipBurst !== null) await deps.limits.checkIp(ip, secrets.length - 1);
      const results = [];
      for (const secret of secrets)
        results.push({ sha256: createHash("sha256").update(secret).digest("hex"), label: (await revoke(deps, secret)) ? "true_positive" : "false_positive" });
      sendJson(res, 200, { revoked: results.filter((r) => r.label === "true_positive").length, results });
    } catch (e) {
      sendError(res, toRelayError(e));
    }
  };
}

async function revoke(deps: LeakDeps, secret: string): Promise<boolean> {
  let meta;
  try {
    meta = await deps.tokens.authenticate(secret);
  } catch (e) {
    if (e instanceof RelayError && e.code === "unavailable") throw e;
    return false; // unknown, expired or already revoked: nothing to do
  }
  // The same revocation as RevokeToken's; a sealed token's row lives as long as the token.
  const row = await deps.tokens.revoke(meta.id, meta.sealed ? new Date(meta.expiresAtMs) : undefined);
  await deps.audit.record({ actor: "leak-report", action: "token.revoked", target: meta.id, detail: "reported leaked" }).catch(() => {});
  return row !== undefined;
}

function parseTokens(body: Buffer, maxTokens: number): string[] {
  const text = body.toString("utf8").trim();
  let found: string[];
  if (text.startsWith("{") || text.startsWith("[")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new RelayError("bad_request", "body must be JSON or one token per line");
    }
    const items = Array.isArray(value) ? value : [value];
    found = items
      .map((item) => (typeof item === "object" && item !== null ? (item as { token?: unknown }).token : undefined))
      .filter((t): t is string => typeof t === "string");
  } else {
    found = text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter(Boolean);
  }
  if (found.length === 0) throw new RelayError("bad_request", "no token in the body");
  if (found.length > maxTokens) throw new RelayError("bad_request", `at most ${maxTokens} tokens per request`);
  return [...new Set(found)];
}
