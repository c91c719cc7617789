/**
 * The reference ceiling: the cheapest correct Node pass-through we know how to write, so the
 * relay is compared with what Node itself allows (issue 22). One undici Pool for the one
 * origin (no Agent lookup per call), a small body read whole and sent as one Buffer with its
 * Content-Length (one write, no stream plumbing), the answer written straight into the
 * client's response by `Pool.stream` (no intermediate Readable, no `stream.pipeline`). It swaps
 * the client's Authorization for the upstream key and does nothing else: no token check, no
 * counting, no logging. The process runs with the relay's V8 settings (target-process.ts).
 */
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool, type Dispatcher } from "undici";

const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"]);
/** Bodies up to this size are buffered and sent in one piece; larger ones stream. */
const SMALL_BODY = 64 * 1024;
const UNREACHABLE = '{"error":{"message":"upstream unreachable"}}';

export function createReferenceProxy(upstream: string, upstreamKey: string): Server {
  const pool = new Pool(upstream, { connections: 256, keepAliveTimeout: 30_000, connect: { noDelay: true } });
  const authorization = `Bearer ${upstreamKey}`;

  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer | IncomingMessage | null): void => {
    const headers: Record<string, string> = { authorization };
    const ct = req.headers["content-type"];
    if (ct !== undefined) headers["content-type"] = ct;
    if (body instanceof Buffer) headers["content-length"] = String(body.length);
    else if (req.headers["content-length"] !== undefined) headers["content-length"] = req.headers["content-length"];
    pool
      .stream({ path: req.url!, method: req.method as Dispatcher.HttpMethod, headers, body }, ({ statusCode, headers: up }) => {
        const out: OutgoingHttpHeaders = {};
        for (const k in up) if (!HOP.has(k)) out[k] = up[k];
        res.writeHead(statusCode, out);
        return res;
      })
      .catch(() => {
        if (res.headersSent) res.destroy();
        else res.writeHead(502, { "content-type": "application/json" }).end(UNREACHABLE);
      });
  };

  const server = createServer({ noDelay: true, keepAliveTimeout: 120_000 }, (req, res) => {
    if (req.method === "GET" || req.method === "HEAD") return forward(req, res, null);
    const length = Number(req.headers["content-length"]);
    if (!(length <= SMALL_BODY)) return forward(req, res, req);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => forward(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 120_000;
  return server;
}

export async function startReferenceProxy(upstream: string, upstreamKey: string): Promise<{ url: string; server: Server }> {
  const server = createReferenceProxy(upstream, upstreamKey);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
