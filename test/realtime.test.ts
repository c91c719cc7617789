/**
 * The WebSocket relay (issue 25): OpenAI Realtime and Gemini Live sessions through the one port,
 * with the real `ws` client, against the mock Realtime provider (test/support/mock-realtime.ts).
 * A session is one counted call; pins are checked before the provider sees a byte; caps close
 * with the documented codes after a provider-shaped error event; one usage record per session.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { createDpopProof, generateDpopKeyPair, jwkThumbprint } from "../src/sdk/dpop-fetch.js";
import { rawRequest } from "./support/http.js";
import { MOCK_USAGE } from "./support/mock-realtime.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { sleep, waitFor } from "./support/wait.js";
import { openSession, refusedUpgrade, wsUrl } from "./support/realtime-client.js";
import { useRealtimeRelay } from "./support/use-realtime-relay.js";

const REALTIME = "/api/openai/v1/realtime";
const LIVE = "/api/gemini/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

const { relay, mock } = useRealtimeRelay();

const recordsOf = (id: string) => relay.calls.filter((c) => c.tokenId === id);

describe("OpenAI Realtime", () => {
  it("a browser-style client (token in Sec-WebSocket-Protocol) exchanges events both ways; the provider sees its key, never the token", async () => {
    const { secret, id } = await relay.issue();
    const before = mock.sessions.length;
    const s = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-realtime`), [
      "realtime",
      `openai-insecure-api-key.${secret}`,
      "openai-beta.realtime-v1",
    ]);
    expect(s.ws.protocol).toBe("realtime");
    expect((await s.next("session.created")).session).toEqual({ model: "gpt-realtime" });
    s.send({ type: "response.create", response: { modalities: ["text"] } });
    expect((await s.next("response.output_text.delta")).delta).toBe("Hello from the mock");
    expect(((await s.next("response.done")).response as { usage: unknown }).usage).toMatchObject({ total_tokens: MOCK_USAGE.total });
    s.ws.close(1000);
    expect((await s.closed).code).toBe(1000);

    expect(mock.sessions.length).toBe(before + 1);
    const seen = mock.sessions.at(-1)!;
    expect(seen.path).toBe("/v1/realtime");
    expect(seen.query.get("model")).toBe("gpt-realtime");
    expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(seen.protocols, "no subprotocol reaches the provider").toEqual([]);
    expect(seen.headers["openai-beta"]).toBe("realtime=v1");
    expect(JSON.stringify({ h: seen.headers, q: [...seen.query], p: seen.protocols, m: seen.received })).not.toContain(secret);
    expect(seen.received.map((m) => JSON.parse(m).type)).toEqual(["response.create"]);

    // One usage record, at close: complete, with the usage the provider reported.
    const [rec] = await waitFor(() => recordsOf(id).length > 0 && recordsOf(id), 3000, "the session's record");
    expect(recordsOf(id)).toHaveLength(1);
    expect(rec).toMatchObject({ status: 101, outcome: Outcome.COMPLETE, model: "gpt-realtime", provider: "openai" });
    expect(rec!.usage).toMatchObject({ promptTokens: MOCK_USAGE.input, completionTokens: MOCK_USAGE.output, totalTokens: MOCK_USAGE.total });
  });

  it("a token in the query or Authorization works too, and is stripped", async () => {
    const { secret } = await relay.issue();
    for (const [url, headers] of [
      [`${REALTIME}?model=gpt-realtime&token=${secret}`, {}],
      [`${REALTIME}?model=gpt-realtime`, { authorization: `Bearer ${secret}` }],
    ] as const) {
      const s = await openSession(wsUrl(relay.url, url), [], headers);
      await s.next("session.created");
      s.ws.close(1000);
      await s.closed;
      const seen = mock.sessions.at(-1)!;
      expect(seen.query.has("token")).toBe(false);
      expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    }
  });

  it("a DPoP-bound token presents its proof in the query (`dpop`, for GET and the path), which the provider never sees", async () => {
    const keys = await generateDpopKeyPair();
    const { secret } = await relay.issue({ limits: { bindJkt: await jwkThumbprint(keys.publicKey) } });
    const url = `${REALTIME}?model=gpt-realtime`;
    const alone = await refusedUpgrade(wsUrl(relay.url, url), ["realtime", `openai-insecure-api-key.${secret}`]);
    expect(alone.status).toBe(401);
    const proof = await createDpopProof(keys, "GET", `${relay.url}${REALTIME}`, secret);
    const s = await openSession(wsUrl(relay.url, `${url}&dpop=${proof}`), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    expect(mock.sessions.at(-1)!.query.has("dpop")).toBe(false);
    s.ws.close(1000);
    await s.closed;
  });

  it("refused at the upgrade with an HTTP error in the provider's shape; nothing reaches the provider", async () => {
    const exhausted = await relay.issue({ limits: { maxCalls: 1n } });
    const s = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${exhausted.secret}`]);
    s.ws.close(1000);
    await s.closed;
    const pinned = await relay.issue({ limits: { models: ["gpt-realtime"] } });
    const before = mock.sessions.length;
    const cases = [
      [exhausted.secret, "gpt-realtime", 429, "calls_exhausted"],
      ["rai_notatoken", "gpt-realtime", 401, "unauthenticated"],
      [pinned.secret, "gpt-4o-realtime-preview", 403, "permission_denied"],
    ] as const;
    for (const [secret, model, status, code] of cases) {
      const r = await refusedUpgrade(wsUrl(relay.url, `${REALTIME}?model=${model}`), ["realtime", `openai-insecure-api-key.${secret}`]);
      expect(r.status, code).toBe(status);
      expect(r.contentType).toBe("application/json");
      expect(JSON.parse(r.body).error.code, code).toBe(code);
    }
    // A pinned token naming no model is refused too.
    expect((await refusedUpgrade(wsUrl(relay.url, REALTIME), ["realtime", `openai-insecure-api-key.${pinned.secret}`])).status).toBe(403);
    expect(mock.sessions.length, "handshakes that reached the provider").toBe(before);
  });

  it("a handshake ws itself would refuse (an empty subprotocol header or entry) is refused before counting: the call and its slot are not lost", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 1n } });
    const port = Number(new URL(relay.url).port);
    const handshake = (method: string, protocol: string) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect(port, "127.0.0.1", () => {
          sock.write(
            `${method} ${REALTIME}?model=gpt-realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
              `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ${protocol}\r\n` +
              `Authorization: Bearer ${secret}\r\n\r\n`,
          );
        });
        let got = "";
        sock.on("data", (d: Buffer) => (got += d.toString()));
        sock.on("close", () => resolve(got));
        sock.on("error", reject);
        setTimeout(() => sock.destroy(), 3000).unref();
      });
    const before = mock.sessions.length;
    for (const [method, protocol] of [
      ["GET", "realtime,"],
      ["GET", "realtime,,x"],
      ["GET", ""],
    ] as const) {
      const answer = await handshake(method, protocol);
      expect(answer.split("\r\n")[0], `${method} ${protocol}`).toMatch(/^HTTP\/1\.1 4\d\d /);
    }
    expect(mock.sessions.length).toBe(before);
    // The token's one call is still there: a proper session opens.
    const ok = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${secret}`]);
    await ok.next("session.created");
    ok.ws.close(1000);
    await ok.closed;
  });

  it("session.update switching to a model outside the pin closes with 1008 before the provider sees it", async () => {
    const { secret, id } = await relay.issue({ limits: { models: ["gpt-realtime"] } });
    const s = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    s.send({ type: "session.update", session: { type: "realtime", model: "gpt-4o-realtime-preview" } });
    const error = await s.next("error");
    expect((error.error as { code: string }).code).toBe("permission_denied");
    expect((await s.closed).code).toBe(1008);
    expect(mock.sessions.at(-1)!.received).toEqual([]);
    await waitFor(() => recordsOf(id).length > 0, 3000, "the session's record");
    expect(recordsOf(id)[0]!.outcome).toBe(Outcome.TRUNCATED);
  });

  it("revocation closes an open session within 1 s", async () => {
    const { secret, id } = await relay.issue();
    const s = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    const t0 = performance.now();
    await relay.tokens.revokeToken({ id });
    const closed = await Promise.race([s.closed, sleep(3000).then(() => ({ code: 0, reason: "still open after 3 s" }))]);
    const ms = performance.now() - t0;
    expect(closed.code).toBe(1008);
    expect(ms).toBeLessThan(1000);
    expect((s.events.find((e) => e.type === "error")?.error as { code: string }).code).toBe("unauthenticated");
    await waitFor(() => recordsOf(id).length > 0, 3000, "the session's record");
    expect(recordsOf(id)[0]!.outcome).toBe(Outcome.TRUNCATED);
  });

  it("the provider refusing the handshake: 1014 with an error event, counted (the provider was reached)", async () => {
    const { secret, id } = await relay.issue();
    mock.refuseWith = 429;
    try {
      const s = await openSession(wsUrl(relay.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${secret}`]);
      expect((await s.next("error")).error).toMatchObject({ code: "rate_limited" });
      expect((await s.closed).code).toBe(1014);
    } finally {
      mock.refuseWith = undefined;
    }
    await waitFor(() => recordsOf(id).length > 0, 3000, "the session's record");
    expect(recordsOf(id)[0]).toMatchObject({ status: 429, outcome: Outcome.UPSTREAM_ERROR });
  });
});

describe("Gemini Live", () => {
  it("setup with a pinned model: setupComplete, a turn both ways, usage recorded at close", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { models: ["gemini-live-ok"] } });
    const s = await openSession(wsUrl(relay.url, `${LIVE}?key=${secret}`));
    s.send({ setup: { model: "models/gemini-live-ok" } });
    await s.nextWhere((e) => "setupComplete" in e);
    s.send({ clientContent: { turns: [{ role: "user", parts: [{ text: "hi" }] }], turnComplete: true } });
    await s.nextWhere((e) => (e.serverContent as { turnComplete?: boolean } | undefined)?.turnComplete === true);
    s.ws.close(1000);
    await s.closed;
    const seen = mock.sessions.at(-1)!;
    expect(seen.headers["x-goog-api-key"]).toBe(UPSTREAM_KEY);
    expect(seen.query.has("key")).toBe(false);
    expect(seen.received.map((m) => Object.keys(JSON.parse(m))[0])).toEqual(["setup", "clientContent"]);
    await waitFor(() => recordsOf(id).length > 0, 3000, "the session's record");
    expect(recordsOf(id)[0]).toMatchObject({ outcome: Outcome.COMPLETE, model: "gemini-live-ok", usage: { totalTokens: MOCK_USAGE.total } });
  });

  it("a setup naming a model outside the pin closes with 1008 before the provider sees a byte; the call is given back", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini", limits: { models: ["gemini-live-ok"], maxCalls: 5n } });
    const before = mock.sessions.length;
    const s = await openSession(wsUrl(relay.url, LIVE), [], { "x-goog-api-key": secret });
    s.send({ setup: { model: "models/gemini-2.5-pro" } });
    const error = await s.nextWhere((e) => "error" in e);
    expect(error.error).toMatchObject({ code: 403, status: "PERMISSION_DENIED" });
    expect((await s.closed).code).toBe(1008);
    await sleep(100);
    expect(mock.sessions.length, "handshakes that reached the provider").toBe(before);
    await waitFor(() => recordsOf(id).length > 0, 3000, "the session's record");
    expect(recordsOf(id)[0]).toMatchObject({ outcome: Outcome.REFUNDED, status: 403 });
  });
});

describe("the one port", () => {
  it("an upgrade the relay does not take (h2c, a WebSocket to a path without sessions) is answered as a plain request", async () => {
    const health = await rawRequest(relay.url, {
      target: "/healthz",
      headers: { connection: "Upgrade, HTTP2-Settings, close", upgrade: "h2c", "http2-settings": "AAMAAABkAAQCAAAAAAIAAAAA" },
    });
    expect(health.status).toBe(200);
    const { secret } = await relay.issue();
    const r = await refusedUpgrade(wsUrl(relay.url, "/api/openai/v1/models"), ["realtime", `openai-insecure-api-key.${secret}`]);
    expect(r.status).not.toBe(101);
  });
});

describe("caps", () => {
  let capped: TestRelay | undefined;
  // Long enough for a loaded machine between two steps of a test; short enough to wait for.
  const IDLE_MS = 1500;
  const MAX_MESSAGE = 64 * 1024;
  beforeAll(async () => {
    capped = await startRelay({
      config: {
        providerBaseUrls: { openai: mock.url },
        maxSessionSeconds: 3,
        sessionIdleMs: IDLE_MS,
        sessionMaxMessageBytes: MAX_MESSAGE,
        // Shorter than a session: an upgraded connection is not cut by the HTTP request timeouts.
        headersTimeoutMs: 1000,
        requestTimeoutMs: 1000,
      },
    });
  });
  afterAll(async () => {
    await capped?.close();
  });
  const open = async (limits = {}) => {
    const { secret, id } = await capped!.issue({ limits });
    const s = await openSession(wsUrl(capped!.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    return { s, id, record: () => waitFor(() => capped!.calls.find((c) => c.tokenId === id), 3000, "the session's record") };
  };

  it("maxSessionSeconds closes the session on time with the error event and 4408", async () => {
    const t0 = performance.now();
    const { s, record } = await open();
    // Busy, never idle: the session limit is what ends it.
    const busy = setInterval(() => s.send({ type: "session.update", session: { instructions: "x" } }), IDLE_MS / 4);
    const closed = await s.closed;
    clearInterval(busy);
    const ms = performance.now() - t0;
    expect(closed.code).toBe(4408);
    expect(ms).toBeGreaterThan(2900);
    expect(ms).toBeLessThan(3800);
    expect(s.events.find((e) => e.type === "error")?.error).toMatchObject({ code: "rate_limited", message: "session time limit reached" });
    expect((await record()).outcome).toBe(Outcome.TRUNCATED);
  });

  it("a token's own max_session_seconds, else its plan's, bounds the session instead of the relay's", async () => {
    for (const how of ["token", "plan"] as const) {
      const t0 = performance.now();
      let s: Awaited<ReturnType<typeof open>>["s"];
      if (how === "token") ({ s } = await open({ maxSessionSeconds: 1 }));
      else {
        await capped!.admin.createPlan({ plan: { name: "short-voice", maxSessionSeconds: 1 } });
        await capped!.app.plans.reload();
        const { secret } = await capped!.issue({ subject: "voice-user", plan: "short-voice" });
        s = await openSession(wsUrl(capped!.url, `${REALTIME}?model=gpt-realtime`), ["realtime", `openai-insecure-api-key.${secret}`]);
        await s.next("session.created");
      }
      const busy = setInterval(() => s.send({ type: "session.update", session: { instructions: "x" } }), IDLE_MS / 4);
      const closed = await s.closed;
      clearInterval(busy);
      expect(closed.code, how).toBe(4408);
      const ms = performance.now() - t0;
      expect(ms, how).toBeGreaterThan(900);
      expect(ms, how).toBeLessThan(2500);
    }
  });

  it("an idle session closes after sessionIdleMs", async () => {
    const t0 = performance.now();
    const { s } = await open();
    const closed = await s.closed;
    expect(closed.code).toBe(4408);
    expect(performance.now() - t0).toBeGreaterThan(IDLE_MS - 100);
    expect(performance.now() - t0).toBeLessThan(IDLE_MS + 1000);
    expect(s.events.find((e) => e.type === "error")?.error).toMatchObject({ message: "session idle for too long" });
  });

  it("a message over the size limit closes with 1009; nothing of it reaches the provider", async () => {
    const { s } = await open();
    s.send({ type: "input_audio_buffer.append", audio: "A".repeat(MAX_MESSAGE + 1) });
    expect((await s.closed).code).toBe(1009);
    expect(mock.sessions.at(-1)!.received).toEqual([]);
  });

  it("the token's LLM-token budget, metered from response.done usage, closes with 4429", async () => {
    const { s, record } = await open({ budgetTokens: BigInt(MOCK_USAGE.total + 1) });
    s.send({ type: "response.create" });
    await s.next("response.done");
    s.send({ type: "response.create" });
    await s.next("response.done");
    expect((await s.next("error")).error).toMatchObject({ code: "budget_exhausted" });
    expect((await s.closed).code).toBe(4429);
    expect((await record()).usage?.totalTokens).toBe(2 * MOCK_USAGE.total);
  });

  it("backpressure: a client that does not read stops the relay reading the provider", async () => {
    const { s } = await open();
    const upstream = mock.sessions.at(-1)!;
    s.ws.pause();
    s.send({ type: "mock.flood", bytes: 48 * 1024 * 1024 });
    await sleep(1500);
    // What the provider could not hand over stays on its side, not in the relay's memory.
    const unsent = upstream.socket.bufferedAmount;
    s.ws.resume();
    s.ws.terminate();
    expect(unsent).toBeGreaterThan(24 * 1024 * 1024);
  });

  it("shutdown: open sessions get 1001 going-away and the relay stops within the grace", async () => {
    const { s } = await open();
    const t0 = performance.now();
    const closing = capped!.close();
    capped = undefined;
    expect((await s.closed).code).toBe(1001);
    await closing;
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});
