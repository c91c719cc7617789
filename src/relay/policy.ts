/**
 * The per-token request policy, checked before a call is counted: path prefixes, browser
 * origin, body size and pinned models. Failures are 403 (or 413 for size) with fixed messages.
 */
import { RelayError } from "../errors.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";

export interface PolicyInput {
  path: string;
  origin: string | undefined;
  body: Buffer;
}

/** Returns the model the request names when it had to be read, else undefined. */
export function checkPolicy(token: TokenMeta, provider: ProviderSpec, req: PolicyInput): string | undefined {
  if (token.provider !== provider.id) throw new RelayError("permission_denied", "token not valid for this provider");
  if (token.paths.length > 0 && !token.paths.some((p) => pathAllowed(req.path, p))) {
    throw new RelayError("permission_denied", "path not allowed for this token");
  }
  // Origin pins protect browser use; a non-browser client sends no Origin and is not refused
  // for it (anyone outside a browser can claim any Origin anyway).
  if (token.origins.size > 0 && req.origin !== undefined && !token.origins.has(req.origin)) {
    throw new RelayError("permission_denied", "origin not allowed for this token");
  }
  if (token.maxBodyBytes !== null && req.body.length > token.maxBodyBytes) {
    throw new RelayError("payload_too_large", "request body too large for this token");
  }
  if (token.models.size === 0) return undefined;
  const model = provider.shape.modelOf(req.path, req.body);
  if (model === undefined || !token.models.has(model)) throw new RelayError("permission_denied", "model not allowed for this token");
  return model;
}

/** A prefix matches whole path segments: `/v1/chat` allows `/v1/chat/completions`, not `/v1/chatx`. */
export function pathAllowed(path: string, prefix: string): boolean {
  if (path === prefix) return true;
  return path.startsWith(prefix.endsWith("/") ? prefix : prefix + "/");
}
