/**
 * `/console` and `/console/*`: the admin console's static files, built by `npm run
 * build:console` into dist/console/ (issue 7). Files under `/console/assets/` are served as
 * they are; every other path (`/console`, `/console/playground`, `/console/tokens`, ...) is a
 * route of the single-page app and gets index.html. A strict CSP lets the page load only its
 * own files and call only this origin; the admin key never travels in a URL.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { readFile, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { PACKAGE_ROOT } from "../package-root.js";
import { RelayError } from "../errors.js";
import { relayErrorShape, sendError, UNAVAILABLE_RETRY_AFTER_S, type AnyResponse } from "./render-error.js";

export const CONSOLE_PREFIX = "/console";

/** Where `npm run build:console` writes the console. */
export const CONSOLE_DIST = join(PACKAGE_ROOT, "dist", "console");

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
};

/** Nothing but this origin's own files and RPCs; no inline script, no framing. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "connect-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

const NOT_BUILT = "The RelayAPI console is not built. Run `npm run build:console` (npm install runs it), then reload.\n";

export function isConsolePath(pathname: string): boolean {
  return pathname === CONSOLE_PREFIX || pathname.startsWith(CONSOLE_PREFIX + "/");
}

export type ConsoleHandler = (req: IncomingMessage | Http2ServerRequest, res: AnyResponse, pathname: string) => Promise<void>;

/** A handler serving the console built into `root` (default: dist/console/). */
export function createConsoleHandler(root: string = CONSOLE_DIST): ConsoleHandler {
  const base = resolve(root);
  const files = new FileCache();
  return async function serveConsole(req, res, pathname) {
    try {
      if (req.method !== "GET" && req.method !== "HEAD") {
        return sendError(res, new RelayError("method_not_allowed", "method not allowed", { headers: { allow: "GET, HEAD" } }), relayErrorShape);
      }
      const rest = pathname.slice(CONSOLE_PREFIX.length).replace(/^\/+/, "");
      const last = rest.slice(rest.lastIndexOf("/") + 1);
      // A last segment with a dot names a file; anything else is a route of the app.
      const file = rest.startsWith("assets/") || last.includes(".") ? inside(base, rest) : join(base, "index.html");
      if (file === undefined) return notFound(res);
      let body: Buffer | undefined;
      try {
        body = await files.read(file);
        if (body === undefined) return notFound(res);
      } catch {
        if (file === join(base, "index.html") || !(await exists(join(base, "index.html")))) return notBuilt(req, res);
        return notFound(res);
      }
      const isIndex = file === join(base, "index.html");
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        "content-type": CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
        "content-length": body.length,
        // Hashed asset names change with their content; index.html names the current ones.
        "cache-control": isIndex || !rest.startsWith("assets/") ? "no-cache" : "public, max-age=31536000, immutable",
      });
      if (req.method === "HEAD") res.end();
      else res.end(body);
    } catch {
      if (!res.headersSent) notFound(res);
      else res.destroy();
    }
  };
}

/**
 * The console's files, each read once and shared by every answer (until it changes on disk).
 * Read per request, each answer held its own copy for as long as its client chose: an h2c
 * client announcing a window of 0 kept ~100 streams per connection waiting with 1.1 MB of the
 * source map each, unauthenticated (test/probe-input.test.ts). A shared buffer is written by
 * reference, so a stalled answer holds nothing of its own. Only files that exist below the
 * console's directory are kept: the cache is as large as the build, at most.
 */
class FileCache {
  readonly #files = new Map<string, { mtimeMs: number; size: number; body: Promise<Buffer> }>();

  /** The file's bytes, or undefined when it is no file; throws when it cannot be read. */
  async read(file: string): Promise<Buffer | undefined> {
    const st = await stat(file);
    if (!st.isFile()) return undefined;
    const known = this.#files.get(file);
    if (known !== undefined && known.mtimeMs === st.mtimeMs && known.size === st.size) return known.body;
    // The promise is kept, so a burst of first requests shares one read too.
    const body = readFile(file);
    this.#files.set(file, { mtimeMs: st.mtimeMs, size: st.size, body });
    body.catch(() => {
      if (this.#files.get(file)?.body === body) this.#files.delete(file);
    });
    return body;
  }
}

/** The file `rel` (still percent-encoded) names below `base`, or undefined when it leaves it. */
function inside(base: string, rel: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0") || decoded.includes("\\")) return undefined;
  const full = resolve(base, decoded);
  return full.startsWith(base + sep) ? full : undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function notFound(res: AnyResponse): void {
  sendError(res, new RelayError("not_found", "not found"), relayErrorShape);
}

function notBuilt(req: IncomingMessage | Http2ServerRequest, res: AnyResponse): void {
  res.writeHead(503, {
    // Every 503 of the relay says when to come back (issue 19.6).
    "retry-after": String(UNAVAILABLE_RETRY_AFTER_S),
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(NOT_BUILT),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  if (req.method === "HEAD") res.end();
  else res.end(NOT_BUILT);
}
