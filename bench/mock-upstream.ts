/**
 * A fast mock LLM provider for benchmarks (node:http): any POST answers like OpenAI's chat
 * completions. Non-streaming: a fixed ~500-byte JSON body with usage. Streaming (`"stream":
 * true`): `chunks` SSE frames `delayMs` apart, then a usage frame when
 * `stream_options.include_usage` is set, then `[DONE]`. Each streamed frame carries `sent_ns`
 * (process.hrtime, CLOCK_MONOTONIC, comparable across processes) so a client can measure how
 * long the frame took to reach it. Request headers `x-mock-chunks` / `x-mock-delay-ms` override.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface MockUpstreamOptions {
  chunks: number;
  delayMs: number;
}

const USAGE = { prompt_tokens: 12, completion_tokens: 40, total_tokens: 52 };
const CONTENT = "Hello! This is a benchmark answer from the mock upstream. It is long enough to look like a short real reply from a model.";
const JSON_BODY = Buffer.from(
  JSON.stringify({
    id: "chatcmpl-bench-0000000000000000000000000",
    object: "chat.completion",
    created: 1_700_000_000,
    model: "gpt-4o-mini-2024-07-18",
    system_fingerprint: "fp_bench",
    choices: [{ index: 0, message: { role: "assistant", content: CONTENT, refusal: null }, logprobs: null, finish_reason: "stop" }],
    usage: USAGE,
  }),
);
const JSON_HEADERS = { "content-type": "application/json", "content-length": String(JSON_BODY.length) };
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };

function frame(i: number, last: boolean): string {
  const chunk = {
    id: "chatcmpl-bench-stream",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "gpt-4o-mini-2024-07-18",
    sent_ns: String(process.hrtime.bigint()),
    choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content: `tok${i} ` } : { content: `tok${i} ` }, finish_reason: last ? "stop" : null }],
  };
  return `data: ${JSON.stringify(chunk)}\n\n`;
}

function usageFrame(): string {
  const chunk = {
    id: "chatcmpl-bench-stream",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "gpt-4o-mini-2024-07-18",
    sent_ns: String(process.hrtime.bigint()),
    choices: [],
    usage: USAGE,
  };
  return `data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`;
}

function intHeader(req: IncomingMessage, name: string, dflt: number): number {
  const v = Number(req.headers[name]);
  return req.headers[name] !== undefined && Number.isInteger(v) && v >= 0 ? v : dflt;
}

function stream(req: IncomingMessage, res: ServerResponse, body: string, opts: MockUpstreamOptions): void {
  let includeUsage = false;
  try {
    includeUsage = (JSON.parse(body) as { stream_options?: { include_usage?: boolean } }).stream_options?.include_usage === true;
  } catch {
    // a malformed body still streams
  }
  const n = intHeader(req, "x-mock-chunks", opts.chunks);
  const delay = intHeader(req, "x-mock-delay-ms", opts.delayMs);
  res.writeHead(200, SSE_HEADERS);
  let i = 0;
  const next = (): void => {
    if (res.destroyed) return;
    if (i < n) {
      res.write(frame(i, i === n - 1));
      i++;
      setTimeout(next, delay);
    } else {
      res.end(includeUsage ? usageFrame() : "data: [DONE]\n\n");
    }
  };
  next();
}

export function createMockUpstream(opts: MockUpstreamOptions): Server {
  const server = createServer({ noDelay: true, keepAliveTimeout: 120_000 }, (req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const body = parts.length === 1 ? parts[0]!.toString() : Buffer.concat(parts).toString();
      if (body.includes('"stream":true')) stream(req, res, body, opts);
      else res.writeHead(200, JSON_HEADERS).end(JSON_BODY);
    });
  });
  server.keepAliveTimeout = 120_000;
  return server;
}

/** Listens on 127.0.0.1 (port 0 picks one) and returns the base URL. */
export async function startMockUpstream(opts: MockUpstreamOptions, port = 0): Promise<{ url: string; server: Server }> {
  const server = createMockUpstream(opts);
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

export const MOCK_JSON_BYTES = JSON_BODY.length;
