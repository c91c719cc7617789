/**
 * Probes of a relayed WebSocket session against a provider that misbehaves at the handshake:
 * one that takes the TCP connection and never answers the upgrade must not hold the client (and
 * its concurrency slot) for the HTTP layer's long headers timeout (10 min), nor end it as an
 * idle session: the client gets the Realtime error event with a gateway timeout, then 1014.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { openSession, wsUrl } from "./support/realtime-client.js";
import { startRelay, type TestRelay } from "./support/relay.js";
import { waitFor } from "./support/wait.js";

let silent: Server;
const held: Socket[] = [];
let relay: TestRelay;

beforeAll(async () => {
  silent = createServer((s) => {
    held.push(s);
    s.on("error", () => {});
  });
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  // The relay's defaults for the provider's timeouts and idle sessions.
  relay = await startRelay({ config: { providerBaseUrls: { openai: url } } });
});
afterAll(async () => {
  await relay?.close();
  for (const s of held) s.destroy();
  silent?.close();
});

describe("a provider that never answers the upgrade", () => {
  it("the client gets an upstream_timeout error event and 1014 within seconds; the call counts as UPSTREAM_ERROR (the provider was reached)", async () => {
    const { secret, id } = await relay.issue();
    const t0 = performance.now();
    const s = await openSession(wsUrl(relay.url, "/api/openai/v1/realtime?model=gpt-realtime"), ["realtime", `openai-insecure-api-key.${secret}`]);
    s.send({ type: "response.create" });
    const { code } = await s.closed;
    const took = performance.now() - t0;
    expect(code).toBe(1014);
    expect(took).toBeLessThan(20_000);
    expect(s.events.find((e) => e.type === "error")?.error).toMatchObject({ code: "upstream_timeout" });
    const rec = await waitFor(() => relay.calls.find((c) => c.tokenId === id), 3000, "the record");
    expect(rec).toMatchObject({ outcome: Outcome.UPSTREAM_ERROR, status: 504 });
  }, 30_000);
});

describe("a Gemini Live client that never sends its setup", () => {
  // Such a session is given back (the provider was never dialled), so without a deadline of
  // its own a leaked token could hold relay slots for the whole idle time, call after call,
  // without ever spending one.
  it("is closed within seconds with the error event and 4408, and given back", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { maxCalls: 2n } });
    const t0 = performance.now();
    const s = await openSession(wsUrl(relay.url, `/api/gemini/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=${secret}`));
    const { code } = await s.closed;
    expect(code).toBe(4408);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(s.events.find((e) => "error" in e)?.error).toMatchObject({ status: "RESOURCE_EXHAUSTED" });
    const rec = await waitFor(() => relay.calls.find((c) => c.tokenId === id), 3000, "the record");
    expect(rec).toMatchObject({ outcome: Outcome.REFUNDED });
  }, 30_000);
});
