/**
 * The ceiling for Connect unary on this box (issue 22, item 4): a bare Node server on one port
 * for HTTP/1.1 and h2c, as the relay serves both (a net server reads the first bytes; the
 * HTTP/2 preface starts with `PRI `), answering every POST with a fixed JSON answer the size of
 * an IntrospectToken answer. No routing, no Connect, no token: what node:http and node:http2
 * themselves cost per call, driven by the same wrk / h2load runs as the relay's IntrospectToken.
 * h2c uses node:http2's stream API (cheaper than the compatibility API the relay's one-port
 * server is built on), so it is the floor, not a like-for-like copy.
 */
import { createServer as createHttp1, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2, type ServerHttp2Stream } from "node:http2";
import { createServer as createNet, type AddressInfo, type Server, type Socket } from "node:net";

/** An IntrospectTokenResponse like the relay's for the bench token (valid JSON for connect-node's client too). */
const ANSWER = Buffer.from(
  JSON.stringify({
    token: {
      id: "tok_0123456789abcdefghij",
      kind: "TOKEN_KIND_ISSUED",
      provider: "openai",
      subject: "bench",
      limits: { maxCalls: "1000000000000" },
      callsUsed: "13254",
      callsLeft: "999999986746",
      expiresAt: "2026-12-07T08:00:00Z",
      createdAt: "2026-12-07T07:00:00Z",
      status: "TOKEN_STATUS_ACTIVE",
    },
  }),
);
const PREFACE = Buffer.from("PRI ");

export async function startBareUnary(): Promise<{ url: string; server: Server }> {
  const h1 = createHttp1({ noDelay: true, keepAliveTimeout: 120_000 }, (req: IncomingMessage, res: ServerResponse) => {
    req.on("data", () => {});
    req.on("end", () => res.writeHead(200, { "content-type": "application/json", "content-length": ANSWER.length }).end(ANSWER));
  });
  const h2 = createHttp2();
  h2.on("stream", (stream: ServerHttp2Stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/json", "content-length": ANSWER.length });
      stream.end(ANSWER);
    });
  });
  const server = createNet({ noDelay: true }, (socket: Socket) => {
    socket.on("error", () => socket.destroy());
    socket.once("readable", () => {
      const head: Buffer | null = socket.read();
      if (head === null) return;
      socket.unshift(head);
      (head.subarray(0, PREFACE.length).equals(PREFACE) ? h2 : h1).emit("connection", socket);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  server.on("close", () => (h1.close(), h2.close()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
