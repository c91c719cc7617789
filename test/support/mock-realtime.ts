/**
 * A mock Realtime provider for the WebSocket relay's tests (issue 25): a `ws` server that
 * speaks OpenAI Realtime's event names (session.created on connect, session.update ->
 * session.updated, response.create -> response.created, a text delta, response.done with
 * usage) and Gemini Live's (setup -> setupComplete, clientContent -> serverContent with a text
 * part, then turnComplete with usageMetadata). It records every handshake (path, query,
 * headers, subprotocols) and every message it received, so a test can assert what reached it.
 * `{"type":"mock.flood","bytes":N}` makes it send N bytes of audio deltas as fast as its socket
 * takes them (for backpressure: how much stays unsent on its side shows whether the relay read).
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

export interface RecordedSession {
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage["headers"];
  protocols: string[];
  /** Messages the client side sent, as text. */
  received: string[];
  closed: { code: number } | undefined;
  socket: WebSocket;
}

/** Usage the mock reports for each response (OpenAI) or turn (Gemini). */
export const MOCK_USAGE = { input: 10, output: 5, total: 15 };

export interface MockRealtime {
  /** `http://127.0.0.1:<port>`: a base URL for the relay's providers. */
  url: string;
  /** Every handshake that reached the mock (accepted or refused). */
  sessions: RecordedSession[];
  /** Answer the next handshakes with this HTTP status instead of 101 (undefined: accept). */
  refuseWith: number | undefined;
  close(): Promise<void>;
}

export async function startMockRealtime(): Promise<MockRealtime> {
  const http = createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has("realtime") ? "realtime" : false) });
  const mock: MockRealtime = {
    url: "",
    sessions: [],
    refuseWith: undefined,
    close: () =>
      new Promise((resolve) => {
        for (const s of mock.sessions) s.socket?.terminate();
        wss.close();
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
  http.on("upgrade", (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? "/", "http://mock");
    const protocols = String(req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    const rec = { path: url.pathname, query: url.searchParams, headers: req.headers, protocols, received: [], closed: undefined } as unknown as RecordedSession;
    mock.sessions.push(rec);
    if (mock.refuseWith !== undefined) {
      socket.end(`HTTP/1.1 ${mock.refuseWith} Refused\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":{"message":"refused by mock"}}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      rec.socket = ws;
      const gemini = url.pathname.includes("BidiGenerateContent");
      ws.on("message", (data: Buffer) => {
        const text = data.toString("utf8");
        rec.received.push(text);
        const msg = JSON.parse(text) as Record<string, unknown>;
        if (gemini) answerGemini(ws, msg);
        else answerOpenai(ws, msg);
      });
      ws.on("close", (code) => (rec.closed = { code }));
      if (!gemini) send(ws, { type: "session.created", session: { model: url.searchParams.get("model") } });
    });
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  mock.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return mock;
}

function send(ws: WebSocket, event: unknown): void {
  ws.send(JSON.stringify(event));
}

function answerOpenai(ws: WebSocket, msg: Record<string, unknown>): void {
  if (msg.type === "mock.flood") {
    const delta = JSON.stringify({ type: "response.output_audio.delta", delta: "A".repeat(16 * 1024) });
    for (let sent = 0; sent < Number(msg.bytes); sent += delta.length) ws.send(delta);
  }
  if (msg.type === "session.update") send(ws, { type: "session.updated", session: msg.session });
  if (msg.type !== "response.create") return;
  send(ws, { type: "response.created", response: { id: "resp_1", status: "in_progress" } });
  send(ws, { type: "response.output_text.delta", response_id: "resp_1", delta: "Hello from the mock" });
  const usage = {
    input_tokens: MOCK_USAGE.input,
    output_tokens: MOCK_USAGE.output,
    total_tokens: MOCK_USAGE.total,
    input_token_details: { text_tokens: 10, audio_tokens: 0 },
    output_token_details: { text_tokens: 5, audio_tokens: 0 },
  };
  send(ws, { type: "response.done", response: { id: "resp_1", status: "completed", usage } });
}

function answerGemini(ws: WebSocket, msg: Record<string, unknown>): void {
  if ("setup" in msg) send(ws, { setupComplete: {} });
  if (!("clientContent" in msg)) return;
  send(ws, { serverContent: { modelTurn: { parts: [{ text: "Hello from the mock" }] } } });
  send(ws, {
    serverContent: { turnComplete: true },
    usageMetadata: { promptTokenCount: MOCK_USAGE.input, responseTokenCount: MOCK_USAGE.output, totalTokenCount: MOCK_USAGE.total },
  });
}
