/**
 * The reference pass-through the bench used until issue 22 (`--old-reference` measures it
 * beside the new one): undici's global-style Agent with `request()`, the client's request
 * stream handed to undici as the body, the answer through `stream.pipeline`. Kept to show
 * what it cost and why (bench/README.md); reference-proxy.ts is the ceiling now.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream";
import { Agent, request, type Dispatcher } from "undici";

const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"]);

export function createOldReferenceProxy(upstream: string, upstreamKey: string): Server {
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256, connect: { noDelay: true } });
  const server = createServer({ noDelay: true, keepAliveTimeout: 120_000 }, (req, res) => {
    const headers: Record<string, string> = { authorization: `Bearer ${upstreamKey}` };
    const ct = req.headers["content-type"];
    if (ct) headers["content-type"] = ct;
    const cl = req.headers["content-length"];
    if (cl) headers["content-length"] = cl;
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    request(upstream + req.url, { method: req.method as Dispatcher.HttpMethod, headers, body: hasBody ? req : null, dispatcher: agent }).then(
      (up) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
        res.writeHead(up.statusCode, out);
        pipeline(up.body, res, () => {});
      },
      () => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
        res.end('{"error":{"message":"upstream unreachable"}}');
      },
    );
  });
  server.keepAliveTimeout = 120_000;
  return server;
}

export async function startOldReferenceProxy(upstream: string, upstreamKey: string): Promise<{ url: string; server: Server }> {
  const server = createOldReferenceProxy(upstream, upstreamKey);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
