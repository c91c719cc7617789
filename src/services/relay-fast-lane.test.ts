/**
 * The Relay fast lane's writer when the client has gone before the engine hands it the answer's
 * head: the engine's sink calls must not throw, and nothing may be left to reject unhandled
 * (Node ends the process on an unhandled rejection). With compression accepted the head is
 * compressed asynchronously, so it is written after the client left; without, it is held.
 * The engine here is a stand-in that waits for the client to leave; the real lane serves it.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { BodyBudget } from "../http/body-budget.js";
import type { ClientAbort } from "../http/client-abort.js";
import type { Logger } from "../log.js";
import type { Limits } from "../limits/limits.js";
import type { RelayEngine, RelayInput, RelaySink } from "../relay/engine.js";
import { createRelayFastLane } from "./relay-fast-lane.js";

const silent = { error() {}, warn() {}, info() {}, debug() {} } as unknown as Logger;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/** Serves the lane with an engine that answers only after the client left; resolves when it ended. */
async function clientGoneBeforeHead(acceptEncoding: string): Promise<{ threw: unknown[]; ended: boolean }> {
  const threw: unknown[] = [];
  let ended = false;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const engine = {
    async relay(input: RelayInput, sink: RelaySink) {
      await new Promise<void>((r) => (input.signal.aborted ? r() : (input.signal as ClientAbort).once("abort", () => r())));
      // The provider's head, large enough to be compressed; then its body, later.
      const headers = { "content-type": "text/event-stream", "x-padding": "p".repeat(2048) };
      for (const call of [() => sink.head(200, headers), () => sink.write(Buffer.from("data: {}\n\n"))]) {
        try {
          await call();
        } catch (e) {
          threw.push(e);
        }
        await sleep(50);
      }
      await sink.end({ outcome: Outcome.TRUNCATED, usage: undefined, callsLeft: null, error: "client went away" });
      ended = true;
      done();
    },
  } as unknown as RelayEngine;
  const lane = createRelayFastLane({
    engine,
    log: silent,
    registry: new Registry(),
    limits: { checkIp: async () => {} } as unknown as Limits,
    ipOf: () => "127.0.0.1",
    adminKey: "rak_test",
    budget: new BodyBudget(0),
    maxBodyBytes: 1 << 20,
  });
  server = createServer((req, res) => {
    if (!lane(req, res, req.url ?? "")) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  const message = Buffer.from(JSON.stringify({ provider: "openai", path: "/v1/chat/completions", bodyText: "{}" }));
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(message.length, 1);
  const req = request({
    host: "127.0.0.1",
    port: (server.address() as AddressInfo).port,
    method: "POST",
    path: "/relayapi.v1.RelayService/Relay",
    headers: { "content-type": "application/connect+json", "connect-accept-encoding": acceptEncoding, "content-length": String(message.length + 5) },
  });
  req.on("error", () => {});
  req.end(Buffer.concat([envelope, message]));
  await sleep(100);
  req.destroy();
  await finished;
  // A rejection left unhandled surfaces after a turn or two; vitest fails the run on it.
  await sleep(100);
  return { threw, ended };
}

describe("the Relay fast lane when the client left before the head", () => {
  it.each(["gzip", "identity"])("with Connect-Accept-Encoding %s: the head does not throw, nothing rejects unhandled", async (encoding) => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { threw, ended } = await clientGoneBeforeHead(encoding);
      expect(ended).toBe(true);
      // The head is never awaited by the engine and must not throw; a chunk may fail (the engine then stops reading).
      expect(threw.filter((e) => !(e instanceof Error && e.message === "client went away"))).toEqual([]);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
