/**
 * A TCP proxy in front of the shared PostgreSQL, so a test can take "the database" away without
 * stopping the server other tests use. Two ways to fail:
 *
 * - stop(): like a PostgreSQL shutdown. It first drops what clients send (PostgreSQL stops
 *   taking queries), waits until the answers to queries already sent have come back (a quiet
 *   300 ms), then destroys every connection: an answer is never lost after its commit, as with a
 *   real shutdown. (A network partition can lose one; the relay then over-counts by that call,
 *   it never under-counts.) start() listens again on the same port.
 * - stall(): a network that swallows bytes (issue 19, finding 2). Connections stay open, new ones
 *   are accepted, and every byte either way is dropped: no error, no close, no answer, ever.
 *   resume() lets bytes through again; connections that lost bytes stay broken, as they would.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { sleep } from "./wait.js";

export interface PgProxy {
  urlFor(databaseUrl: string): string;
  /** Like a PostgreSQL shutdown: no new connections or queries, answers already due are delivered, then every connection closes. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /** Every byte, either way, is dropped from now on; nothing is closed. */
  stall(): void;
  /** Bytes pass again. */
  resume(): void;
  close(): Promise<void>;
}

export async function startPgProxy(target: URL): Promise<PgProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let cut = false;
  let stalled = false;
  let lastAnswer = 0;
  let server: Server | undefined;
  let port = 0;
  const listen = async (): Promise<void> => {
    cut = false;
    server = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      const pair: [Socket, Socket] = [client, upstream];
      pairs.add(pair);
      const end = (): void => {
        client.destroy();
        upstream.destroy();
        pairs.delete(pair);
      };
      client.on("data", (d) => void (cut || stalled || upstream.write(d)));
      upstream.on("data", (d) => {
        if (stalled) return;
        lastAnswer = Date.now();
        client.write(d);
      });
      for (const s of pair) {
        s.on("error", end);
        s.on("close", end);
      }
    });
    await new Promise<void>((resolve, reject) => {
      server!.once("error", reject);
      server!.listen(port, "127.0.0.1", () => resolve());
    });
    port = (server.address() as { port: number }).port;
  };
  await listen();
  const closeServer = (): Promise<void> => new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  return {
    urlFor(databaseUrl) {
      const u = new URL(databaseUrl);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    async stop() {
      cut = true;
      const closed = closeServer();
      lastAnswer = Date.now();
      const deadline = Date.now() + 10_000;
      while (Date.now() - lastAnswer < 300 && Date.now() < deadline) await sleep(50);
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
      await closed;
    },
    start: listen,
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
    },
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await closeServer();
    },
  };
}
