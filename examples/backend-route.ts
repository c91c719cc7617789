/**
 * Example: an app backend route that mints a per-user sealed token with `relayapi/sdk`, offline
 * (no call to the relay), so the browser can call the LLM through the relay without ever
 * holding the real API key. A plain node:http handler `(req, res)`; it also mounts unchanged in
 * Express (`app.post("/token", tokenRoute(options))`).
 *
 * Proof of possession (RFC 9449): when the page posts `{"dpopKey": <its public JWK>}` (from
 * `browserDpopKey()`, a non-extractable key kept in IndexedDB), the token is bound to that key
 * and is worth nothing without it: every call must carry a DPoP proof signed by the page's key
 * (`dpopFetch`). Without a body the token is a plain bearer token, as before.
 *
 * Run it (after `npm ci`, with a relay on :8080 and an issuer from `relayapi issuer create`):
 *
 *   RELAYAPI_URL=http://127.0.0.1:8080 RELAYAPI_ISSUER_KEY=<kid>:<secret> OPENAI_API_KEY=sk-... \
 *     node bin/run-ts.js examples/backend-route.ts
 *
 * then open http://127.0.0.1:3000/ (examples/browser.html: the openai SDK, streaming) or
 * http://127.0.0.1:3000/dpop (examples/browser-dpop.html: the same with a key-bound token; start
 * the relay with RELAYAPI_PUBLIC_ORIGIN set to the URL the browser uses for it).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { join, normalize } from "node:path";
import { pathToFileURL } from "node:url";
import type { JWK } from "jose";
import { relayBaseURL, sealToken, type IssuerKey } from "relayapi/sdk";

export interface TokenRouteOptions {
  /** The relay as the browser reaches it, e.g. `https://relay.example.com`. */
  relayUrl: string;
  /** From `relayapi issuer create`: `{ kid, secret }` or `kid:secret`. */
  issuerKey: IssuerKey | string;
  /** The real upstream key: it travels only inside the encrypted token. */
  upstreamKey: string;
  provider?: string;
  /** Per token: a user who wants more asks again and is checked again. */
  maxCalls?: number;
  ttlSeconds?: number;
  models?: string[];
  /** Browser origins allowed to use the token (the relay checks `Origin`). */
  origins?: string[];
  /** Who is calling. Replace with your session or auth middleware; undefined answers 401. */
  userOf?: (req: IncomingMessage) => string | undefined;
}

/** Demo only: the user named by an `x-demo-user` header. A real app reads its session. */
const demoUser = (req: IncomingMessage): string | undefined => {
  const u = req.headers["x-demo-user"];
  return typeof u === "string" && /^[\w.@-]{1,64}$/.test(u) ? u : undefined;
};

/** A public JWK is ~100-200 bytes; anything much larger is not one. */
const MAX_BODY_BYTES = 2048;

/**
 * POST: `{ token, baseURL, expiresAt }` for the signed-in user. An optional JSON body
 * `{ "dpopKey": <public JWK> }` binds the token to that key (`sealToken`'s `bindKey`).
 */
export function tokenRoute(opts: TokenRouteOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const provider = opts.provider ?? "openai";
  const baseURL = relayBaseURL(opts.relayUrl, provider);
  return async (req, res) => {
    if (req.method !== "POST") return send(res, 405, { error: "POST only" });
    const user = (opts.userOf ?? demoUser)(req);
    if (!user) return send(res, 401, { error: "sign in first" });
    const body = await readSmallBody(req, MAX_BODY_BYTES);
    if (body === undefined) return send(res, 413, { error: `the body is over ${MAX_BODY_BYTES} bytes` }, { connection: "close" });
    const bindKey = dpopKeyOf(body);
    if (typeof bindKey === "string") return send(res, 400, { error: bindKey });
    const exp = Math.floor(Date.now() / 1000) + (opts.ttlSeconds ?? 600);
    let token: string;
    try {
      token = await sealToken(
        {
          prv: provider,
          key: opts.upstreamKey,
          sub: user,
          max: opts.maxCalls ?? 20,
          exp,
          ...(opts.models?.length ? { mdl: opts.models } : {}),
          ...(opts.origins?.length ? { org: opts.origins } : {}),
          ...(bindKey ? { bindKey } : {}),
        },
        opts.issuerKey,
      );
    } catch (e) {
      // A well-formed JWK that is not a point on the curve: sealToken imports it and says so.
      if (bindKey && e instanceof TypeError && /bindKey/.test(e.message)) return send(res, 400, { error: "dpopKey is not a valid public key" });
      throw e;
    }
    send(res, 200, { token, baseURL, expiresAt: new Date(exp * 1000).toISOString() });
  };
}

/**
 * The public members of the posted `dpopKey` (EC P-256 or OKP Ed25519), undefined without one,
 * or why it is refused. A key with a private part is refused: the page must never send one.
 */
function dpopKeyOf(body: string): JWK | undefined | string {
  if (body.trim() === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return "the body must be JSON";
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return "the body must be a JSON object";
  const jwk = (parsed as { dpopKey?: unknown }).dpopKey;
  if (jwk === undefined) return undefined;
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) return "dpopKey must be a JWK object";
  const { kty, crv, x, y, d } = jwk as Record<string, unknown>;
  if (d !== undefined) return "dpopKey must be a public key: never send the private key";
  const coord = (v: unknown): v is string => typeof v === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(v);
  if (kty === "EC" && crv === "P-256" && coord(x) && coord(y)) return { kty, crv, x, y };
  if (kty === "OKP" && crv === "Ed25519" && coord(x)) return { kty, crv, x };
  return "dpopKey must be a public EC P-256 or OKP Ed25519 JWK";
}

/** The request body as text, or undefined when it is over `limit` bytes (the rest is discarded). */
function readSmallBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  if (Number(req.headers["content-length"] ?? 0) > limit) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else resolve(undefined); // answered at once; the 413 closes the connection
    });
    req.on("end", () => resolve(size <= limit ? Buffer.concat(chunks).toString("utf8") : undefined));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(JSON.stringify(body));
}

/**
 * The demo app: the token route, the pages, the openai SDK's browser build from node_modules and
 * `relayapi/sdk` as one ES module (bundled from source by esbuild on first use; an app's own
 * bundler does the same with `import ... from "relayapi/sdk"`). Nothing is fetched from a CDN.
 */
export function demoApp(route: (req: IncomingMessage, res: ServerResponse) => Promise<void>): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = new URL(req.url ?? "/", "http://demo.invalid").pathname;
    if (path === "/token") return void route(req, res).catch(() => send(res, 500, { error: "could not mint a token" }));
    if (path === "/") return void serveFile(res, join(ROOT, "browser.html"), "text/html; charset=utf-8");
    if (path === "/dpop") return void serveFile(res, join(ROOT, "browser-dpop.html"), "text/html; charset=utf-8");
    if (path === "/vendor/relayapi-sdk.js") {
      return void sdkBundle().then(
        (js) => {
          res.writeHead(200, { "content-type": "text/javascript", "cache-control": "no-cache" });
          res.end(js);
        },
        () => send(res, 500, { error: "could not bundle relayapi/sdk (run npm ci)" }),
      );
    }
    const vendored = normalize(path.slice("/vendor/openai/".length));
    if (path.startsWith("/vendor/openai/") && vendored.endsWith(".mjs") && !vendored.startsWith("..")) {
      return void serveFile(res, join(ROOT, "..", "node_modules", "openai", vendored), "text/javascript");
    }
    send(res, 404, { error: "not found" });
  };
}

const ROOT = import.meta.dirname;
let bundled: Promise<Uint8Array> | undefined;

/** src/sdk/index.ts as one browser ES module, built once (esbuild is a dev dependency). */
function sdkBundle(): Promise<Uint8Array> {
  bundled ??= import("esbuild")
    .then(({ build }) =>
      build({
        entryPoints: [join(ROOT, "..", "src", "sdk", "index.ts")],
        bundle: true,
        write: false,
        format: "esm",
        platform: "browser",
        target: "es2022",
        // protobuf-es probes `process.env` behind a guard; a browser has no `process`.
        define: { process: "undefined" },
        logLevel: "silent",
      }),
    )
    .then((out) => out.outputFiles[0]!.contents);
  bundled.catch(() => (bundled = undefined));
  return bundled;
}

/** Runs the demo on :3000 (PORT), minting tokens for the relay at RELAYAPI_URL. */
async function main(): Promise<void> {
  const env = process.env;
  const port = Number(env.PORT ?? 3000);
  const origin = `http://127.0.0.1:${port}`;
  if (!env.RELAYAPI_ISSUER_KEY || !env.OPENAI_API_KEY) {
    console.error("set RELAYAPI_ISSUER_KEY (<kid>:<secret> from `relayapi issuer create`) and OPENAI_API_KEY");
    process.exit(2);
  }
  const route = tokenRoute({
    relayUrl: env.RELAYAPI_URL ?? "http://127.0.0.1:8080",
    issuerKey: env.RELAYAPI_ISSUER_KEY,
    upstreamKey: env.OPENAI_API_KEY,
    models: (env.MODELS ?? "gpt-4o-mini").split(","),
    origins: [origin],
  });
  createServer(demoApp(route)).listen(port, "127.0.0.1", () => console.log(`open ${origin}/ (bearer token) or ${origin}/dpop (key-bound token)`));
}

async function serveFile(res: ServerResponse, file: string, type: string): Promise<void> {
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": type });
    res.end(body);
  } catch {
    send(res, 404, { error: "not found" });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
