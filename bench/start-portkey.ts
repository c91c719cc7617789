/**
 * Runs Portkey's gateway (build/start-server.js) inside the current (target) process, bound to
 * 127.0.0.1 on a free port: the gateway listens on all interfaces by default, so `listen` calls
 * without a host are pinned to loopback before it loads. Its stdout should be ignored by the parent
 * (it clears the console and draws a spinner).
 */
import { createServer, Server } from "node:net";
import { pathToFileURL } from "node:url";

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function startPortkey(entry: string): Promise<string> {
  const port = await freePort();
  const listen = Server.prototype.listen;
  Server.prototype.listen = function (this: Server, ...args: unknown[]) {
    const first = args[0];
    if (typeof first === "object" && first !== null && !("host" in first)) args[0] = { ...first, host: "127.0.0.1" };
    else if (typeof first === "number" && args[1] === undefined) args[1] = "127.0.0.1";
    else if (typeof first === "number" && typeof args[1] === "function") args.splice(1, 0, "127.0.0.1");
    return listen.apply(this, args as Parameters<typeof listen>);
  } as typeof listen;
  process.argv = [process.argv[0]!, entry, `--port=${port}`, "--headless"];
  await import(pathToFileURL(entry).href);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + "/")).ok) return url;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Portkey did not answer on ${url}`);
}
