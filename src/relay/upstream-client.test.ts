/**
 * UpstreamClient against a real node:http server on 127.0.0.1: the body handed on in order
 * with sync and async writers, the socket paused behind a slow writer (and nothing lost), a
 * writer that throws aborting the upstream call, dump(), aborts before and after the headers,
 * and what the refund rule depends on: whether a failed request was sent (DESIGN 3.3).
 * End-to-end behaviour (SSE, faults, backpressure through the HTTP layer and RelayService) is
 * in test/.
 */
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { ClientGone, UpstreamClient, UpstreamFailed } from "./upstream-client.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class Signal extends EventEmitter {
  aborted = false;
  abort(): void {
    this.aborted = true;
    this.emit("abort");
  }
}

let server: Server;
let base: string;
/** Set by the /big route: how many bytes the server managed to write, and whether it saw the client go. */
const big = { written: 0, closed: false };

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url!, "http://x");
  if (url.pathname === "/chunks") {
    const n = Number(url.searchParams.get("n"));
    res.writeHead(200, { "content-type": "text/plain" });
    let i = 0;
    const next = (): void => {
      if (i === n) return void res.end();
      res.write(`chunk-${i++};`);
      setTimeout(next, 1);
    };
    next();
  } else if (url.pathname === "/big") {
    // 8 MB offered as fast as the socket takes it.
    big.written = 0;
    big.closed = false;
    res.writeHead(200, { "content-type": "application/octet-stream" });
    res.on("close", () => (big.closed = true));
    const piece = Buffer.alloc(64 * 1024, 0x61);
    const pump = (): void => {
      while (big.written < 8 * 2 ** 20) {
        big.written += piece.length;
        if (!res.write(piece)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  } else if (url.pathname === "/stall") {
    // never answers
  } else if (url.pathname === "/reset") {
    // reads the whole request, then resets the connection without a word
    req.resume();
    req.on("end", () => req.socket.resetAndDestroy());
  } else if (url.pathname === "/early") {
    res.writeEarlyHints({ link: "</a.css>; rel=preload" });
    setTimeout(() => res.writeHead(201, { "x-late": "yes" }).end("done"), 5);
  } else {
    res.writeHead(404).end("no");
  }
}

beforeAll(async () => {
  server = createServer(route);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const client = () => new UpstreamClient({ headersTimeoutMs: 300, idleTimeoutMs: 2000 });

describe("UpstreamClient", () => {
  it("hands every chunk on in order, to a synchronous writer and to an asynchronous one", async () => {
    const up = client();
    for (const slow of [false, true]) {
      const res = await up.send(`${base}/chunks?n=40`, "GET", {}, undefined, new Signal());
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toBe("text/plain");
      const parts: string[] = [];
      await res.body.pipe((c) => {
        parts.push(c.toString());
        return slow ? sleep(2) : undefined;
      });
      expect(parts.join("")).toBe(Array.from({ length: 40 }, (_, i) => `chunk-${i};`).join(""));
    }
    await up.close();
  });

  it("pauses the upstream socket behind a slow writer, then delivers all of it", async () => {
    const up = client();
    const res = await up.send(`${base}/big`, "GET", {}, undefined, new Signal());
    let got = 0;
    let aheadAtStart = 0;
    await res.body.pipe(async (c) => {
      got += c.length;
      if (got === c.length) {
        await sleep(300); // the first chunk takes long: the provider must stop well short of 8 MB
        aheadAtStart = big.written;
      }
    });
    expect(got).toBe(8 * 2 ** 20);
    // Socket buffers on both sides hold a few MB at most; unbounded reading would have taken all 8.
    expect(aheadAtStart).toBeLessThan(6 * 2 ** 20);
    await up.close();
  });

  it("a writer that throws aborts the upstream call and rejects the pipe", async () => {
    const up = client();
    const res = await up.send(`${base}/big`, "GET", {}, undefined, new Signal());
    await expect(
      res.body.pipe(() => {
        throw new Error("client went away");
      }),
    ).rejects.toThrow("client went away");
    await sleep(50);
    expect(big.closed).toBe(true);
    expect(big.written).toBeLessThan(8 * 2 ** 20);
    await up.close();
  });

  it("dump() reads a small body to the end and aborts a large one at its limit", async () => {
    const up = client();
    const small = await up.send(`${base}/chunks?n=3`, "GET", {}, undefined, new Signal());
    await small.body.dump();
    const large = await up.send(`${base}/big`, "GET", {}, undefined, new Signal());
    await large.body.dump(256 * 1024);
    await sleep(50);
    expect(big.closed).toBe(true);
    await up.close();
  });

  it("skips 1xx answers and resolves with the final status", async () => {
    const up = client();
    const res = await up.send(`${base}/early`, "GET", {}, undefined, new Signal());
    expect(res.statusCode).toBe(201);
    expect(res.headers["x-late"]).toBe("yes");
    const parts: Buffer[] = [];
    await res.body.pipe((c) => void parts.push(c));
    expect(Buffer.concat(parts).toString()).toBe("done");
    await up.close();
  });

  it("classifies failures before the headers, and says whether the request was sent", async () => {
    const up = client();
    const failure = async (url: string, headers: Record<string, string> = {}, body?: Buffer) => {
      const e = await up.send(url, body ? "POST" : "GET", headers, body, new Signal()).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(UpstreamFailed);
      expect(e).toBeInstanceOf(RelayError); // rendered like any other RelayError
      return { code: (e as UpstreamFailed).code, sent: (e as UpstreamFailed).sent };
    };
    // Written, then no headers in time: the provider has the request (counted, never refunded).
    expect(await failure(`${base}/stall`)).toEqual({ code: "upstream_timeout", sent: true });
    expect(await failure(`${base}/stall`, { "content-type": "application/json" }, Buffer.from('{"model":"m"}'))).toEqual({
      code: "upstream_timeout",
      sent: true,
    });
    // Read whole, then reset: sent too.
    expect(await failure(`${base}/reset`, {}, Buffer.from("x".repeat(100_000)))).toEqual({ code: "upstream_unreachable", sent: true });
    // Never connected, or never written: provably not sent.
    expect(await failure("http://127.0.0.1:1/x")).toEqual({ code: "upstream_unreachable", sent: false });
    expect(await failure("http://relayapi-no-such-host.invalid/x")).toEqual({ code: "upstream_unreachable", sent: false });
    expect(await failure(`${base}/chunks?n=1`, { "x-bad": "a\r\nb" })).toEqual({ code: "bad_request", sent: false });

    const gone = new Signal();
    const pending = up.send(`${base}/stall`, "GET", {}, undefined, gone).catch((e: unknown) => e);
    setTimeout(() => gone.abort(), 20);
    expect(await pending).toBeInstanceOf(ClientGone);

    const already = new Signal();
    already.abort();
    expect(await up.send(`${base}/chunks?n=1`, "GET", {}, undefined, already).catch((e: unknown) => e)).toBeInstanceOf(ClientGone);

    await up.close();
  });

  it("a client gone mid-body rejects the pipe and releases the abort listener", async () => {
    const up = client();
    const signal = new Signal();
    const res = await up.send(`${base}/chunks?n=200`, "GET", {}, undefined, signal);
    const piping = res.body.pipe(() => {});
    setTimeout(() => signal.abort(), 20);
    await expect(piping).rejects.toBeInstanceOf(ClientGone);
    expect(signal.listenerCount("abort")).toBe(0);

    const done = new Signal();
    const whole = await up.send(`${base}/chunks?n=2`, "GET", {}, undefined, done);
    await whole.body.pipe(() => {});
    expect(done.listenerCount("abort")).toBe(0);
    await up.close();
  });
});
