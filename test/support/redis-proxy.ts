/**
 * A TCP proxy in front of the shared Redis, so a test can take "Redis" away from some relays
 * without stopping the server other test files use. `cut()` is Redis going down (every
 * connection reset, new ones reset at once: clients see errors and reconnect in a loop);
 * `freeze()` is a partition (connections stay open, nothing is delivered either way: commands
 * hang until a client's own timeout); `restore()` brings it back (frozen connections are reset,
 * as a partition that heals after TCP gave up). Redis keeps its data throughout.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export interface RedisProxy {
  /** `redis://127.0.0.1:<proxy port>` */
  url: string;
  cut(): void;
  freeze(): void;
  restore(): void;
  close(): Promise<void>;
}

type Mode = "up" | "cut" | "frozen";

export async function startRedisProxy(target: URL): Promise<RedisProxy> {
  const pairs = new Set<[Socket, Socket | undefined]>();
  let mode: Mode = "up";
  const destroyAll = (): void => {
    for (const [a, b] of pairs) {
      a.destroy();
      b?.destroy();
    }
    pairs.clear();
  };
  const server: Server = createServer((client) => {
    client.on("error", () => {});
    if (mode === "cut") {
      client.destroy();
      return;
    }
    if (mode === "frozen") {
      // Accepted and never answered, like a host that stopped responding.
      const pair: [Socket, Socket | undefined] = [client, undefined];
      pairs.add(pair);
      client.on("close", () => pairs.delete(pair));
      return;
    }
    const upstream = connect(Number(target.port || 6379), target.hostname);
    const pair: [Socket, Socket | undefined] = [client, upstream];
    pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("data", (d) => void (mode === "up" && upstream.write(d)));
    upstream.on("data", (d) => void (mode === "up" && client.write(d)));
    upstream.on("error", end);
    upstream.on("close", end);
    client.on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    cut() {
      mode = "cut";
      destroyAll();
    },
    freeze() {
      mode = "frozen";
    },
    restore() {
      if (mode === "frozen") destroyAll();
      mode = "up";
    },
    async close() {
      destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
