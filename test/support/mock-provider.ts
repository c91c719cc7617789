/**
 * Mock LLM provider for tests: a plain node:http server speaking the real wire formats of
 * OpenAI (chat/completions, responses, models; stored responses and files by id), Anthropic (messages) and Gemini (generateContent,
 * streamGenerateContent, with and without alt=sse), streaming included. Routes match by path suffix, so any prefix
 * (/v1, /v1beta, /openai/...) works. Every request is recorded (headers as received, full
 * body) before it is answered, and flagged `aborted` if its client hung up mid-response.
 *
 * Per-request knobs (request headers): `x-mock-status: NNN` answers NNN with an OpenAI-shaped
 * error; `x-mock-chunks: N` and `x-mock-delay-ms: N` override the stream length / chunk delay.
 * `x-mock-headers-delay-ms: N` waits N ms after the body before answering (a slow provider);
 * `x-mock-answer-before-body: NNN` answers NNN before reading the body, then closes the connection.
 * `x-mock-reset: after-body` destroys the socket once the body was read, `mid-stream` after the
 * first SSE frame. `behave(fn)` sets the same per request from code (chaos tests), by
 * request (path, headers, key): what it returns wins over the headers; its `stream` answers
 * recorded bytes verbatim, part by part.
 * Generated text is "tok0 tok1 ... tok{N-1} " (one token per chunk); prompt tokens are always
 * MOCK_PROMPT_TOKENS, completion tokens = N.
 * Usage parts (prices, issue 24): `x-mock-prompt-tokens: P` reports P prompt tokens instead;
 * `x-mock-cached-tokens`, `x-mock-cache-write-tokens` (Anthropic) and `x-mock-reasoning-tokens`
 * add those parts in each shape's own fields (reasoning tokens on top of the N generated ones).
 * Service tiers (priced tiers): OpenAI answers name `service_tier: "default"`, as the real API does;
 * `x-mock-service-tier: T` names T instead (`none`: no field), on Anthropic in `usage.service_tier`.
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

/** The usage a response reports (the `x-mock-*-tokens` headers); `parts` when any part header was sent. */
interface UsageKnobs {
  prompt: number;
  cached: number;
  cacheWrite: number;
  reasoning: number;
  parts: boolean;
  /** `x-mock-service-tier`; undefined: the shape's default (OpenAI `default`, Anthropic none). */
  tier: string | undefined;
}
const usageKnobs = new WeakMap<ServerResponse, UsageKnobs>();
const knobsOf = (res: ServerResponse): UsageKnobs =>
  usageKnobs.get(res) ?? { prompt: MOCK_PROMPT_TOKENS, cached: 0, cacheWrite: 0, reasoning: 0, parts: false, tier: undefined };

function readUsageKnobs(req: IncomingMessage): UsageKnobs {
  const parts = ["x-mock-cached-tokens", "x-mock-cache-write-tokens", "x-mock-reasoning-tokens"].some((h) => req.headers[h] !== undefined);
  return {
    prompt: intHeader(req, "x-mock-prompt-tokens", MOCK_PROMPT_TOKENS),
    cached: intHeader(req, "x-mock-cached-tokens", 0),
    cacheWrite: intHeader(req, "x-mock-cache-write-tokens", 0),
    reasoning: intHeader(req, "x-mock-reasoning-tokens", 0),
    parts,
    tier: typeof req.headers["x-mock-service-tier"] === "string" ? req.headers["x-mock-service-tier"] : undefined,
  };
}

/** OpenAI's top-level `service_tier` (the tier that served the call), unless `none`. */
function openaiTier(k: UsageKnobs): Json {
  return k.tier === "none" ? {} : { service_tier: k.tier ?? "default" };
}

async function openaiChat(res: ServerResponse, body: Json, n: number, delay: number): Promise<void> {
  const id = `chatcmpl-mock-${++seq}`,
    created = now(),
    model = String(body.model ?? "gpt-mock");
  const k = knobsOf(res);
  const usage = {
    prompt_tokens: k.prompt,
    completion_tokens: n + k.reasoning,
    total_tokens: k.prompt + n + k.reasoning,
    ...(k.parts
      ? { prompt_tokens_details: { cached_tokens: k.cached, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: k.reasoning, audio_tokens: 0 } }
      : {}),
  };
  if (body.stream !== true) {
    return sendJson(res, 200, {
      id,
      object: "chat.completion",
      created,
      model,
      ...openaiTier(k),
      system_fingerprint: "fp_mock",
      choices: [{ index: 0, message: { role: "assistant", content: text(n), refusal: null }, logprobs: null, finish_reason: "stop" }],
      usage,
    });
  }
  const includeUsage = (body.stream_options as Json | undefined)?.include_usage === true;
  const base = { id, object: "chat.completion.chunk", created, model, ...openaiTier(k), system_fingerprint: "fp_mock" };
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

/** Anthropic's input counts: `input_tokens` excludes the cache's reads and writes, reported beside it. */
function anthropicInput(k: UsageKnobs): Record<string, number | string> {
  const tier: Record<string, string> = k.tier === undefined || k.tier === "none" ? {} : { service_tier: k.tier };
  return k.parts
    ? { input_tokens: k.prompt, cache_creation_input_tokens: k.cacheWrite, cache_read_input_tokens: k.cached, ...tier }
    : { input_tokens: k.prompt, ...tier };
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
      usage: { ...anthropicInput(knobsOf(res)), output_tokens: n },
    });
  }
  const frames = [
    event("message_start", { message: { ...message, content: [], usage: { ...anthropicInput(knobsOf(res)), output_tokens: 1 } } }),
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
async function openaiResponses(res: ServerResponse, body: Json, n: number, delay: number, stored: Stored): Promise<void> {
  const id = `resp_mock_${++seq}`,
    itemId = `msg_mock_${seq}`,
    model = String(body.model ?? "gpt-mock");
  const k = knobsOf(res);
  const usage = {
    input_tokens: k.prompt,
    input_tokens_details: { cached_tokens: k.cached },
    output_tokens: n + k.reasoning,
    output_tokens_details: { reasoning_tokens: k.reasoning },
    total_tokens: k.prompt + n + k.reasoning,
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
    ...openaiTier(k),
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
  // Kept for GET /responses/{id} and the other object routes (openaiObjects).
  stored.responses.set(id, response("completed", true));
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

/** OpenAI objects the mock keeps for later calls (issue 25): stored responses and files, by id. */
interface Stored {
  responses: Map<string, Json>;
  files: Map<string, { file: Json; content: Buffer }>;
}

/** The parts of a multipart/form-data body: name, filename and bytes of each. */
function formParts(contentType: string | undefined, body: Buffer): { name: string; filename?: string; data: Buffer }[] {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? "");
  if (!boundary) return [];
  const delimiter = Buffer.from(`\r\n--${boundary[1] ?? boundary[2]}`);
  const parts: { name: string; filename?: string; data: Buffer }[] = [];
  // The body starts with the delimiter without its CRLF.
  let at = body.indexOf(delimiter.subarray(2));
  while (at !== -1) {
    const start = at + delimiter.length - 2 + 2; // past the delimiter and its CRLF
    const headEnd = body.indexOf("\r\n\r\n", start);
    const next = body.indexOf(delimiter, start);
    if (headEnd === -1 || next === -1) break;
    const head = body.subarray(start, headEnd).toString("latin1");
    const name = /name="([^"]*)"/.exec(head)?.[1] ?? "";
    const filename = /filename="([^"]*)"/.exec(head)?.[1];
    parts.push({ name, ...(filename !== undefined ? { filename } : {}), data: body.subarray(headEnd + 4, next) });
    at = next + 2;
  }
  return parts;
}

/**
 * OpenAI's object routes, as the real API answers them: GET/DELETE /responses/{id}, POST
 * /responses/{id}/cancel, GET /responses/{id}/input_items; POST /files (multipart), GET /files,
 * GET/DELETE /files/{id}, GET /files/{id}/content. An unknown id is a 404. False: not one of them.
 */
function openaiObjects(rec: RecordedRequest, res: ServerResponse, stored: Stored): boolean {
  const { method, path } = rec;
  const resp = /\/responses\/([^/]+)(\/cancel|\/input_items)?$/.exec(path);
  const file = /\/files\/([^/]+)(\/content)?$/.exec(path);
  if (resp && !["compact", "input_tokens"].includes(resp[1]!)) {
    const [, id, action] = resp;
    const r = stored.responses.get(id!);
    if (!r) sendJson(res, 404, { error: { message: `Response with id '${id}' not found.`, type: "invalid_request_error", param: null, code: null } });
    else if (action === "/cancel" && method === "POST") sendJson(res, 200, { ...r, status: "cancelled" });
    else if (action === "/input_items" && method === "GET") sendJson(res, 200, { object: "list", data: [], first_id: null, last_id: null, has_more: false });
    else if (action === undefined && method === "GET") sendJson(res, 200, r);
    else if (action === undefined && method === "DELETE") {
      stored.responses.delete(id!);
      sendJson(res, 200, { id, object: "response", deleted: true });
    } else return false;
    return true;
  }
  if (method === "POST" && /\/files$/.test(path)) {
    const parts = formParts(rec.headers["content-type"] as string | undefined, rec.body);
    const upload = parts.find((p) => p.name === "file");
    if (!upload) {
      sendJson(res, 400, openaiError(400, "'file' is a required property"));
      return true;
    }
    const id = `file-mock${++seq}`;
    const purpose = parts.find((p) => p.name === "purpose")?.data.toString("utf8") ?? "user_data";
    const f = {
      id,
      object: "file",
      bytes: upload.data.length,
      created_at: now(),
      filename: upload.filename ?? "upload",
      purpose,
      status: "processed",
      expires_at: null,
      status_details: null,
    };
    stored.files.set(id, { file: f, content: Buffer.from(upload.data) });
    sendJson(res, 200, f);
    return true;
  }
  if (method === "GET" && /\/files$/.test(path)) {
    sendJson(res, 200, { object: "list", data: [...stored.files.values()].map((x) => x.file), has_more: false });
    return true;
  }
  if (!file) return false;
  const [, id, content] = file;
  const f = stored.files.get(id!);
  if (!f) sendJson(res, 404, { error: { message: `No such File object: ${id}`, type: "invalid_request_error", param: "id", code: null } });
  else if (content && method === "GET") {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(f.content.length) });
    res.end(f.content);
  } else if (!content && method === "GET") sendJson(res, 200, f.file);
  else if (!content && method === "DELETE") {
    stored.files.delete(id!);
    sendJson(res, 200, { id, object: "file", deleted: true });
  } else return false;
  return true;
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
  // promptTokenCount includes the cached tokens; thoughts are not among the candidates' tokens.
  const k = knobsOf(res);
  const usageMetadata = {
    promptTokenCount: k.prompt,
    candidatesTokenCount: n,
    totalTokenCount: k.prompt + n + k.reasoning,
    ...(k.parts ? { cachedContentTokenCount: k.cached, thoughtsTokenCount: k.reasoning } : {}),
  };
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
  const stored: Stored = { responses: new Map(), files: new Map() };
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
    // A provider that refuses a body from its head (a large upload, a bad purpose) answers at
    // once and closes the connection, without reading the rest.
    const early = intHeader(req, "x-mock-answer-before-body", 0);
    if (early >= 100 && early <= 599) {
      res.setHeader("connection", "close");
      res.on("finish", () => req.socket.destroy());
      return sendJson(res, early, openaiError(early, `mock error ${early} before the body`));
    }
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
    usageKnobs.set(res, readUsageKnobs(req));
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
    if (openaiObjects(rec, res, stored)) return;
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
    if (route === "responses") return openaiResponses(res, body, n, delay, stored);
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
