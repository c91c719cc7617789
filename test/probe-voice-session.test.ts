/**
 * Probes of a relayed WebSocket session's liveness checks (src/realtime/realtime-session.ts)
 * with real `ws` sockets: a client that stops answering pings (a phone asleep, a half-open TCP
 * path) and a provider that does the same must end the session cleanly (both sockets closed,
 * one end reported, so the slot and the record are not lost), and never throw out of a timer
 * (an uncaught exception there takes the whole relay down).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { openaiShape } from "../src/providers/shapes/openai.js";
import { openaiRealtime } from "../src/realtime/openai-realtime.js";
import { RealtimeSession, type SessionEnd, type SessionOptions } from "../src/realtime/realtime-session.js";
import { sleep, waitFor } from "./support/wait.js";

interface Pair {
  server: Server;
  /** The relay's side of the socket. */
  accepted: WebSocket;
  /** The peer (client or provider) on the other end. */
  peer: WebSocket;
  ready: Promise<WebSocket>;
}

const open: Server[] = [];
afterEach(() => {
  for (const s of open.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});

/**
 * A socket pair: `peer` dials the server, whose `accepted` socket is the other end. `peerPongs`
 * and `serverPongs` say which ends answer pings. With `wait` false, `peer` is returned before it
 * opens (as the relay attaches the provider's socket while it dials).
 */
async function pair(peerPongs: boolean, serverPongs = true, wait = true): Promise<Pair> {
  const server = createServer();
  open.push(server);
  const wss = new WebSocketServer({ server, autoPong: serverPongs });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const accepted = new Promise<WebSocket>((r) => wss.once("connection", r));
  const peer = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`, { autoPong: peerPongs });
  if (!wait) return { server, peer, accepted: undefined as unknown as WebSocket, ready: accepted } as Pair;
  await new Promise((r, j) => {
    peer.once("open", r);
    peer.once("error", j);
  });
  return { server, accepted: await accepted, peer, ready: accepted };
}

function sessionOn(client: WebSocket, onEnd: (e: SessionEnd) => void, pingMs?: number, over: Partial<SessionOptions> = {}): RealtimeSession {
  return new RealtimeSession(client, {
    tokenId: "tok_probe",
    models: new Set(),
    framing: openaiRealtime,
    shape: openaiShape,
    endAt: Date.now() + 60_000,
    endIsExpiry: false,
    idleMs: 60_000,
    maxMessageBytes: 1 << 20,
    tokenCap: undefined,
    pingMs,
    onEnd,
    ...over,
  });
}

/** Errors thrown out of timers during `fn` (vitest would report them after the test, unattributed). */
async function uncaughtDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const on = (e: unknown): void => void seen.push(e);
  const listeners = process.listeners("uncaughtException");
  process.removeAllListeners("uncaughtException");
  process.on("uncaughtException", on);
  try {
    await fn();
  } finally {
    process.off("uncaughtException", on);
    for (const l of listeners) process.on("uncaughtException", l);
  }
  return seen;
}

describe("ping timeouts", () => {
  it("a client that stops answering pings is cut: no exception escapes, the session ends and is reported once", async () => {
    const client = await pair(false);
    const provider = await pair(true);
    const ends: SessionEnd[] = [];
    const thrown = await uncaughtDuring(async () => {
      const s = sessionOn(client.accepted, (e) => ends.push(e), 100);
      s.markReached();
      s.attach(provider.peer, () => new Error("x") as never);
      await waitFor(() => ends.length > 0, 3000, "the session's end");
      await sleep(300);
    });
    expect(thrown).toEqual([]);
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ outcome: Outcome.TRUNCATED, reached: true });
    expect(client.accepted.readyState).toBe(WebSocket.CLOSED);
    await waitFor(() => provider.accepted.readyState === WebSocket.CLOSED, 3000, "the provider's socket closed");
  });

  it("the relay's shutdown deadline (terminate) cuts an open session without throwing", async () => {
    const client = await pair(true);
    const provider = await pair(true);
    const ends: SessionEnd[] = [];
    const s = sessionOn(client.accepted, (e) => ends.push(e), 30_000);
    s.markReached();
    s.attach(provider.peer, () => new Error("x") as never);
    await waitFor(() => provider.peer.readyState === WebSocket.OPEN, 3000, "open");
    await sleep(50);
    expect(() => s.terminate()).not.toThrow();
    await waitFor(() => ends.length > 0, 3000, "the session's end");
    expect(ends).toHaveLength(1);
    expect(ends[0]!.outcome).toBe(Outcome.TRUNCATED);
  });

  it("a provider that stops answering pings (half-open) ends the session with 1014 for the client", async () => {
    const client = await pair(true);
    // The relay dials the provider (peer); the provider's end (the server's) never answers a ping.
    const provider = await pair(true, false, false);
    const ends: SessionEnd[] = [];
    const closed = new Promise<number>((r) => client.peer.once("close", (code) => r(code)));
    const s = sessionOn(client.accepted, (e) => ends.push(e), 100);
    s.markReached();
    s.attach(provider.peer, () => new Error("x") as never);
    expect(await Promise.race([closed, sleep(2000).then(() => "still open")])).toBe(1014);
    await waitFor(() => ends.length > 0, 3000, "the session's end");
    expect(ends[0]).toMatchObject({ outcome: Outcome.TRUNCATED, reached: true });
  });
});

describe("dollar cap", () => {
  it("a session whose usage reaches its dollar reservation closes with the error event and 4429, though under its token cap", async () => {
    const client = await pair(true);
    const provider = await pair(true, true, false);
    const ends: SessionEnd[] = [];
    const closed = new Promise<number>((r) => client.peer.once("close", (code) => r(code)));
    const events: string[] = [];
    client.peer.on("message", (d: Buffer) => events.push(d.toString()));
    const s = sessionOn(client.accepted, (e) => ends.push(e), undefined, {
      tokenCap: 16_384,
      // One micro-dollar per audio input token: 1,000 of them spend the reservation.
      costCap: { microUsd: 1000, costOf: (u) => u.audioInputTokens ?? 0, model: "gpt-realtime" },
    });
    s.markReached();
    s.attach(provider.peer, () => new Error("x") as never);
    const upstream = await provider.ready;
    await waitFor(() => provider.peer.readyState === WebSocket.OPEN, 3000, "open");
    const done = (audio: number) =>
      JSON.stringify({
        type: "response.done",
        response: { usage: { input_tokens: audio, output_tokens: 1, total_tokens: audio + 1, input_token_details: { audio_tokens: audio } } },
      });
    upstream.send(done(600));
    await sleep(100);
    expect(ends).toEqual([]);
    upstream.send(done(600));
    expect(await Promise.race([closed, sleep(2000).then(() => "still open")])).toBe(4429);
    expect(JSON.parse(events.at(-1)!)).toMatchObject({ type: "error", error: { code: "budget_exhausted" } });
    await waitFor(() => ends.length > 0, 3000, "the session's end");
    expect(ends[0]!.usage).toMatchObject({ audioInputTokens: 1200, totalTokens: 1202 });
  });
});
