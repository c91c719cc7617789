/**
 * Example: an app backend route that mints a per-user sealed token with `relayapi/sdk`, offline
 * (no call to the relay), so the browser can call the LLM through the relay without ever
 * holding the real API key. A plain node:http handler `(req, res)`; it also mounts unchanged in
 * Express (`app.post("/token", tokenRoute(options))`).
 *
 * Run it (after `npm ci`, with a relay on :8080 and an issuer from `relayapi issuer create`):
 *
 *   RELAYAPI_URL=http://127.0.0.1:8080 RELAYAPI_ISSUER_KEY=<kid>:<secret> OPENAI_API_KEY=sk-... \
 *     node bin/run-ts.js examples/backend-route.ts
 *
 * then open http://127.0.0.1:3000/ (examples/browser.html: the openai SDK, streaming).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { join, normalize } from "node:path";
import { pathToFileURL } from "node:url";
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

/** POST: `{ token, baseURL, expiresAt }` for the signed-in user. */
export function tokenRoute(opts: TokenRouteOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const provider = opts.provider ?? "openai";
  const baseURL = relayBaseURL(opts.relayUrl, provider);
  return async (req, res) => {
    if (req.method !== "POST") return send(res, 405, { error: "POST only" });
    const user = (opts.userOf ?? demoUser)(req);
    if (!user) return send(res, 401, { error: "sign in first" });
    const exp = Math.floor(Date.now() / 1000) + (opts.ttlSeconds ?? 600);
    const token = await sealToken(
      {
        prv: provider,
        key: opts.upstreamKey,
        sub: user,
        max: opts.maxCalls ?? 20,
        exp,
        ...(opts.models?.length ? { mdl: opts.models } : {}),
        ...(opts.origins?.length ? { org: opts.origins } : {}),
      },
      opts.issuerKey,
    );
    send(res, 200, { token, baseURL, expiresAt: new Date(exp * 1000).toISOString() });
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

/** The demo app: the page, the openai SDK's browser build from node_modules, and the route. */
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
  const root = import.meta.dirname;
  const openaiDir = join(root, "..", "node_modules", "openai");
  createServer((req, res) => {
    const path = new URL(req.url ?? "/", origin).pathname;
    if (path === "/token") return void route(req, res).catch(() => send(res, 500, { error: "could not mint a token" }));
    if (path === "/") return void serveFile(res, join(root, "browser.html"), "text/html; charset=utf-8");
    const vendored = normalize(path.slice("/vendor/openai/".length));
    if (path.startsWith("/vendor/openai/") && vendored.endsWith(".mjs") && !vendored.startsWith("..")) {
      return void serveFile(res, join(openaiDir, vendored), "text/javascript");
    }
    send(res, 404, { error: "not found" });
  }).listen(port, "127.0.0.1", () => console.log(`open ${origin}/`));
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
