/**
 * Mock LLM provider for tests: a plain node:http server speaking the real wire formats of
 * OpenAI (chat/completions, responses, models), Anthropic (messages) and Gemini (generateContent,
 * streamGenerateContent, with and without alt=sse), streaming included. Routes match by path suffix, so any prefix
 * (/v1, /v1beta, /openai/...) works. Every request is recorded (headers as received, full
 * body) before it is answered, and flagged `aborted` if its client hung up mid-response.
 *
 * Per-request knobs (request headers): `x-mock-status: NNN` answers NNN with an OpenAI-shaped
 * error; `x-mock-chunks: N` and `x-mock-delay-ms: N` override the stream length / chunk delay.
 * `x-mock-headers-delay-ms: N` waits N ms after the body before answering (a slow provider);
 * `x-mock-reset: after-body` destroys the socket once the body was read, `mid-stream` after the
 * first SSE frame. `behave(fn)` sets the same per request from code (chaos tests), by
 * request (path, headers, key): what it returns wins over the headers; its `stream` answers
 * recorded bytes verbatim, part by part.
 * Generated text is "tok0 tok1 ... tok{N-1} " (one token per chunk); prompt tokens are always
 * MOCK_PROMPT_TOKENS, completion tokens = N.
 *
 * `requests` is appended to when a request's head arrives, before its body is read: its length
 * is the count of calls that reached the provider, whatever happened to them after.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  aborted: boolean;
}
export interface MockProvider {
  url: string; // e.g. http://127.0.0.1:PORT (no trailing slash)
  requests: RecordedRequest[]; // every request seen, in order
  /** resolves once a request whose path includes `pathPart` has been aborted by its client (socket closed before the mock finished responding) */
  waitForAbort(pathPart?: string, timeoutMs?: number): Promise<RecordedRequest>;
  /** override the next responses: status + JSON body (+ optional headers); consumed once each */
  failNext(status: number, body: unknown, headers?: Record<string, string>): void;
  reset(): void; // clears requests and pending failures
  close(): Promise<void>;
  /** decides how the mock answers each request (see Behaviour); `undefined` clears it */
  behave(fn: ((rec: RecordedRequest) => Behaviour | undefined) | undefined): void;
}
export interface MockOptions {
  chunks?: number;
  chunkDelayMs?: number;
}
/** One request's answer, chosen by `behave`; unset fields fall back to the headers' knobs. */
export interface Behaviour {
  /** answer this status with an OpenAI-shaped error body (or `body`) */
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** wait this long after the body before the response head */
  headersDelayMs?: number;
  /** destroy the socket: after the body was read, or after the first stream frame */
  reset?: "after-body" | "mid-stream";
  chunks?: number;
  chunkDelayMs?: number;
  /**
   * answer 200 with these bytes verbatim (recorded fixtures), one socket write per part, waiting
   * `delaysMs[i]` (else `delayMs`, else 0) before part i; stops early if the client left
   */
  stream?: { contentType: string; parts: (string | Buffer)[]; delayMs?: number; delaysMs?: number[] };
}

/** prompt/input token count reported by every route */
export const MOCK_PROMPT_TOKENS = 10;

type Json = Record<string, unknown>;
interface Failure {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}
interface AbortWaiter {
  pathPart: string;
  resolve(r: RecordedRequest): void;
}

const sleep = (ms: number) => new Promise<void>((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r)));
const tok = (i: number) => `tok${i} `;
const text = (n: number) => Array.from({ length: n }, (_, i) => tok(i)).join("");
const now = () => Math.floor(Date.now() / 1000);

function intHeader(req: IncomingMessage, name: string, dflt: number): number {
  const v = Number(req.headers[name]);
  return Number.isInteger(v) && v >= 0 ? v : dflt;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  // As the providers answer: a JSON body with its length (streams are chunked).
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

function openaiError(status: number, message: string): Json {
  const type = status >= 500 ? "server_error" : "invalid_request_error";
  return { error: { message, type, param: null, code: null } };
}

/** Writes SSE frames one at a time (separate socket writes), stopping early if the client left. */
async function sendSse(res: ServerResponse, frames: string[], delayMs: number): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.flushHeaders();
  const resetMidStream = midStreamReset.has(res);
  for (let i = 0; i < frames.length; i++) {
    if (i > 0) await sleep(delayMs);
    if (res.destroyed) return;
    res.write(frames[i]);
    if (resetMidStream) {
      await sleep(5);
      res.socket?.destroy();
      return;
    }
  }
  if (!res.destroyed) res.end();
}
const data = (obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`;
const event = (name: string, obj: Json) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...obj })}\n\n`;

let seq = 0;
/** Responses whose socket is destroyed after their first stream frame. */
const midStreamReset = new WeakSet<ServerResponse>();

async function openaiChat(res: ServerResponse, body: Json, n: number, delay: number): Promise<void> {
  const id = `chatcmpl-mock-${++seq}`,
    created = now(),
    model = String(body.model ?? "gpt-mock");
  const usage = { prompt_tokens: MOCK_PROMPT_TOKENS, completion_tokens: n, total_tokens: MOCK_PROMPT_TOKENS + n };
  if (body.stream !== true) {
    return sendJson(res, 200, {
      id,
      object: "chat.completion",
      created,
      model,
      system_fingerprint: "fp_mock",
      choices: [{ index: 0, message: { role: "assistant", content: text(n), refusal: null }, logprobs: null, finish_reason: "stop" }],
      usage,
    });
  }
  const includeUsage = (body.stream_options as Json | undefined)?.include_usage === true;
  const base = { id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_mock" };
  const extra = includeUsage ? { usage: null } : {};
  const frames = Array.from({ length: Math.max(n, 1) }, (_, i) =>
    data({
      ...base,
      choices: [
        {
          index: 0,
          delta: { ...(i === 0 ? { role: "assistant" } : {}), content: n === 0 ? "" : tok(i) },
          logprobs: null,
          finish_reason: i === Math.max(n, 1) - 1 ? "stop" : null,
        },
      ],
      ...extra,
    }),
  );
  if (includeUsage) frames.push(data({ ...base, choices: [], usage }));
  frames.push("data: [DONE]\n\n");
  await sendSse(res, frames, delay);
}

async function anthropicMessages(res: ServerResponse, body: Json, n: number, delay: number): Promise<void> {
  const id = `msg_mock_${++seq}`,
    model = String(body.model ?? "claude-mock");
  const message = { id, type: "message", role: "assistant", model, stop_reason: null, stop_sequence: null };
  if (body.stream !== true) {
    return sendJson(res, 200, {
      ...message,
      content: [{ type: "text", text: text(n) }],
      stop_reason: "end_turn",
      usage: { input_tokens: MOCK_PROMPT_TOKENS, output_tokens: n },
    });
  }
  const frames = [
    event("message_start", { message: { ...message, content: [], usage: { input_tokens: MOCK_PROMPT_TOKENS, output_tokens: 1 } } }),
    event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
    ...Array.from({ length: n }, (_, i) => event("content_block_delta", { index: 0, delta: { type: "text_delta", text: tok(i) } })),
    event("content_block_stop", { index: 0 }),
    event("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: n } }),
    event("message_stop", {}),
  ];
  await sendSse(res, frames, delay);
}

/** Writes recorded bytes verbatim, part by part (Behaviour.stream). */
async function sendParts(res: ServerResponse, s: NonNullable<Behaviour["stream"]>): Promise<void> {
  res.writeHead(200, { "content-type": s.contentType });
  res.flushHeaders();
  for (let i = 0; i < s.parts.length; i++) {
    await sleep(s.delaysMs?.[i] ?? (i > 0 ? (s.delayMs ?? 0) : 0));
    if (res.destroyed) return;
    res.write(s.parts[i]);
  }
  if (!res.destroyed) res.end();
}

/** OpenAI Responses API (POST /v1/responses): a response object, or its event stream ending in `response.completed`. */
async function openaiResponses(res: ServerResponse, body: Json, n: number, delay: number): Promise<void> {
  const id = `resp_mock_${++seq}`,
    itemId = `msg_mock_${seq}`,
    model = String(body.model ?? "gpt-mock");
  const usage = {
    input_tokens: MOCK_PROMPT_TOKENS,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: n,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: MOCK_PROMPT_TOKENS + n,
  };
  const part = { type: "output_text", annotations: [], logprobs: [], text: text(n) };
  const item = { id: itemId, type: "message", status: "completed", content: [part], role: "assistant" };
  const response = (status: string, done: boolean) => ({
    id,
    object: "response",
    created_at: now(),
    status,
    background: false,
    error: null,
    incomplete_details: null,
    instructions: null,
    max_output_tokens: body.max_output_tokens ?? null,
    model,
    output: done ? [item] : [],
    parallel_tool_calls: true,
    previous_response_id: null,
    store: true,
    temperature: 1.0,
    text: { format: { type: "text" } },
    tool_choice: "auto",
    tools: [],
    top_p: 1.0,
    truncation: "disabled",
    usage: done ? usage : null,
    user: null,
    metadata: {},
  });
  if (body.stream !== true) return sendJson(res, 200, response("completed", true));
  let sn = 0;
  const ev = (type: string, obj: Json) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sn++, ...obj })}\n\n`;
  const at = { item_id: itemId, output_index: 0, content_index: 0 };
  const frames = [
    ev("response.created", { response: response("in_progress", false) }),
    ev("response.in_progress", { response: response("in_progress", false) }),
    ev("response.output_item.added", { output_index: 0, item: { id: itemId, type: "message", status: "in_progress", content: [], role: "assistant" } }),
    ev("response.content_part.added", { ...at, part: { ...part, text: "" } }),
    ...Array.from({ length: n }, (_, i) => ev("response.output_text.delta", { ...at, delta: tok(i), logprobs: [] })),
    ev("response.output_text.done", { ...at, text: text(n), logprobs: [] }),
    ev("response.content_part.done", { ...at, part }),
    ev("response.output_item.done", { output_index: 0, item }),
    ev("response.completed", { response: response("completed", true) }),
  ];
  await sendSse(res, frames, delay);
}

/**
 * Gemini's streamGenerateContent without alt=sse: one JSON array, written element by element
 * as Google frames it (`[{` pretty-printed objects separated by `\n,\r\n`, then `\n]`).
 */
async function sendJsonArrayStream(res: ServerResponse, items: unknown[], delayMs: number): Promise<void> {
  res.writeHead(200, { "content-type": "application/json; charset=UTF-8" });
  res.flushHeaders();
  for (let i = 0; i < items.length; i++) {
    if (i > 0) await sleep(delayMs);
    if (res.destroyed) return;
    res.write((i === 0 ? "[" : "\n,\r\n") + JSON.stringify(items[i], null, 2));
  }
  if (!res.destroyed) res.end("\n]");
}

async function gemini(res: ServerResponse, model: string, stream: boolean, sse: boolean, n: number, delay: number): Promise<void> {
  const usageMetadata = { promptTokenCount: MOCK_PROMPT_TOKENS, candidatesTokenCount: n, totalTokenCount: MOCK_PROMPT_TOKENS + n };
  const chunk = (t: string, last: boolean) => ({
    candidates: [{ content: { parts: [{ text: t }], role: "model" }, index: 0, ...(last ? { finishReason: "STOP" } : {}) }],
    ...(last ? { usageMetadata } : {}),
    modelVersion: model,
  });
  if (!stream) return sendJson(res, 200, chunk(text(n), true));
  const count = Math.max(n, 1);
  const parts = Array.from({ length: count }, (_, i) => chunk(n === 0 ? "" : tok(i), i === count - 1));
  // Without alt=sse the real API streams one JSON array, element by element.
  if (!sse) return sendJsonArrayStream(res, parts, delay);
  await sendSse(res, parts.map(data), delay);
}

export async function startMockProvider(opts: MockOptions = {}): Promise<MockProvider> {
  const defChunks = opts.chunks ?? 5,
    defDelay = opts.chunkDelayMs ?? 0;
  const requests: RecordedRequest[] = [];
  const failures: Failure[] = [];
  let waiters: AbortWaiter[] = [];
  const delivered = new Set<RecordedRequest>();
  let behaviour: ((rec: RecordedRequest) => Behaviour | undefined) | undefined;

  const notifyAbort = (rec: RecordedRequest) => {
    const w = waiters.find((x) => rec.path.includes(x.pathPart));
    if (!w) return;
    waiters = waiters.filter((x) => x !== w);
    delivered.add(rec);
    w.resolve(rec);
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", "http://mock");
    const rec: RecordedRequest = {
      method: req.method ?? "GET",
      path: u.pathname,
      query: u.searchParams,
      headers: { ...req.headers },
      body: Buffer.alloc(0),
      aborted: false,
    };
    requests.push(rec);
    res.on("error", () => {});
    res.on("close", () => {
      if (res.writableFinished) return;
      rec.aborted = true;
      notifyAbort(rec);
    });
    const bufs: Buffer[] = [];
    try {
      for await (const c of req) bufs.push(c as Buffer);
    } catch {
      return; // client went away while sending the body
    }
    rec.body = Buffer.concat(bufs);

    const b = behaviour?.(rec) ?? {};
    const reset = b.reset ?? req.headers["x-mock-reset"];
    if (reset === "after-body") {
      req.socket.destroy();
      return;
    }
    if (reset === "mid-stream") midStreamReset.add(res);
    const headersDelay = b.headersDelayMs ?? intHeader(req, "x-mock-headers-delay-ms", 0);
    if (headersDelay > 0) await sleep(headersDelay);
    if (res.destroyed) return;
    const failure = failures.shift();
    if (failure) return sendJson(res, failure.status, failure.body, failure.headers);
    if (b.status !== undefined) return sendJson(res, b.status, b.body ?? openaiError(b.status, `mock error ${b.status}`), b.headers);
    if (b.stream !== undefined) return sendParts(res, b.stream);
    const forced = Number(req.headers["x-mock-status"]);
    if (Number.isInteger(forced) && forced >= 100 && forced <= 599) {
      return sendJson(res, forced, openaiError(forced, `mock error ${forced}`));
    }

    const n = b.chunks ?? intHeader(req, "x-mock-chunks", defChunks);
    const delay = b.chunkDelayMs ?? intHeader(req, "x-mock-delay-ms", defDelay);
    const p = u.pathname;
    const gem = /\/models\/([^/]+):(generateContent|streamGenerateContent)$/.exec(p);
    const post = rec.method === "POST";
    const route =
      post && p.endsWith("/chat/completions")
        ? "openai"
        : post && p.endsWith("/responses")
          ? "responses"
          : post && p.endsWith("/messages")
            ? "anthropic"
            : post && gem
              ? "gemini"
              : rec.method === "GET" && p.endsWith("/models")
                ? "models"
                : null;
    if (!route) return sendJson(res, 404, { error: { message: "not found", type: "invalid_request_error" } });
    if (route === "models") {
      const created = now();
      return sendJson(res, 200, {
        object: "list",
        data: ["gpt-4o", "gpt-4o-mini"].map((id) => ({ id, object: "model", created, owned_by: "openai" })),
      });
    }

    let body: Json;
    try {
      const parsed: unknown = JSON.parse(rec.body.toString("utf8"));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
      body = parsed as Json;
    } catch {
      return sendJson(res, 400, openaiError(400, "invalid JSON body"));
    }
    if (route === "openai") return openaiChat(res, body, n, delay);
    if (route === "responses") return openaiResponses(res, body, n, delay);
    if (route === "anthropic") return anthropicMessages(res, body, n, delay);
    const [, model, method] = gem!;
    return gemini(res, decodeURIComponent(model!), method === "streamGenerateContent", u.searchParams.get("alt") === "sse", n, delay);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, openaiError(500, `mock internal error: ${String(err)}`));
      else res.destroy();
    });
  });
  // Longer than typical client keep-alive (undici: 4s) so the client always closes idle sockets first.
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 31_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    waitForAbort(pathPart = "", timeoutMs = 5000) {
      const done = requests.find((r) => r.aborted && !delivered.has(r) && r.path.includes(pathPart));
      if (done) {
        delivered.add(done);
        return Promise.resolve(done);
      }
      return new Promise<RecordedRequest>((resolve, reject) => {
        const w: AbortWaiter = {
          pathPart,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          reject(new Error(`waitForAbort(${JSON.stringify(pathPart)}) timed out after ${timeoutMs}ms`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    failNext(status, body, headers) {
      failures.push({ status, body, headers });
    },
    reset() {
      requests.length = 0;
      failures.length = 0;
      delivered.clear();
      behaviour = undefined;
    },
    behave(fn) {
      behaviour = fn;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
