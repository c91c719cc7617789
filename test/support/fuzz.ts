/**
 * Helpers for the fuzz, fault and hygiene suites: a keep-alive raw HTTP/1.1 client (bytes on the
 * wire exactly as given, one connection reused until the server closes it), secret fragments to
 * search answers for, the process's memory, and the per-file case counts that
 * test/support/fuzz-summary.ts adds up at the end of a run.
 */
import { appendFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { expect, inject } from "vitest";

export interface WireResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The header block as received, for searching. */
  head: string;
  body: Buffer;
  /** The server closed the connection before the body was complete. */
  truncated: boolean;
}

const HEAD_END = Buffer.from("\r\n\r\n");

/** One HTTP/1.1 connection, reconnected when the server closes it; requests go one at a time. */
export class RawClient {
  #socket: Socket | undefined;
  #buf: Buffer = Buffer.alloc(0);
  #closed = true;
  #wake: (() => void) | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs = 10_000,
  ) {}

  static for(baseUrl: string): RawClient {
    const u = new URL(baseUrl);
    return new RawClient(u.hostname, Number(u.port));
  }

  /** Sends `head` (request line and headers, CRLF-terminated by the caller) and `body` as given. */
  async send(head: string | Buffer, body?: Buffer, method = "GET"): Promise<WireResponse> {
    if (this.#closed) await this.#connect();
    const socket = this.#socket!;
    socket.write(typeof head === "string" ? Buffer.from(head, "latin1") : head);
    if (body && body.length > 0) socket.write(body);
    const timer = setTimeout(() => socket.destroy(new Error("raw request timed out")), this.timeoutMs);
    try {
      for (;;) {
        const res = await this.#readResponse(method);
        if (res.status >= 200 || res.truncated) return res;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** A request in origin form with a Host header and a content-length when there is a body. */
  request(method: string, target: string, headers: Record<string, string> = {}, body?: Buffer | string): Promise<WireResponse> {
    const bytes = body === undefined ? undefined : Buffer.from(body);
    const all: Record<string, string> = { host: `${this.host}:${this.port}`, ...headers };
    if (bytes && !Object.keys(all).some((h) => /^(content-length|transfer-encoding)$/i.test(h))) all["content-length"] = String(bytes.length);
    const head = `${method} ${target} HTTP/1.1\r\n${Object.entries(all)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("")}\r\n`;
    return this.send(Buffer.from(head, "utf8"), bytes, method);
  }

  close(): void {
    this.#socket?.destroy();
    this.#closed = true;
  }

  #connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.port, this.host);
      socket.setNoDelay(true);
      this.#buf = Buffer.alloc(0);
      socket.once("connect", () => {
        this.#closed = false;
        socket.off("error", reject);
        socket.on("error", () => {});
        resolve();
      });
      socket.once("error", reject);
      socket.on("data", (d: Buffer) => {
        this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
        this.#wake?.();
      });
      socket.on("close", () => {
        if (this.#socket === socket) this.#closed = true;
        this.#wake?.();
      });
      this.#socket = socket;
    });
  }

  /** Resolves when more bytes arrived or the connection closed; false when closed and drained. */
  async #more(): Promise<boolean> {
    if (this.#closed) return false;
    await new Promise<void>((r) => (this.#wake = r));
    this.#wake = undefined;
    return true;
  }

  async #take(n: number): Promise<Buffer | undefined> {
    while (this.#buf.length < n) if (!(await this.#more())) return undefined;
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  async #line(): Promise<string | undefined> {
    for (;;) {
      const i = this.#buf.indexOf("\r\n");
      if (i !== -1) {
        const line = this.#buf.subarray(0, i).toString("latin1");
        this.#buf = this.#buf.subarray(i + 2);
        return line;
      }
      if (!(await this.#more())) return undefined;
    }
  }

  async #readResponse(method: string): Promise<WireResponse> {
    let end: number;
    while ((end = this.#buf.indexOf(HEAD_END)) === -1) {
      if (!(await this.#more())) {
        if (this.#buf.length === 0) throw new Error("connection closed without a response");
        throw new Error(`incomplete response head: ${JSON.stringify(this.#buf.toString("latin1").slice(0, 200))}`);
      }
    }
    const head = this.#buf.subarray(0, end).toString("latin1");
    this.#buf = this.#buf.subarray(end + 4);
    const [statusLine, ...lines] = head.split("\r\n");
    const status = Number(statusLine!.split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const i = line.indexOf(":");
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const chunks: Buffer[] = [];
    let truncated = false;
    if (status < 200 || status === 204 || status === 304 || method === "HEAD") {
      // no body
    } else if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
      for (;;) {
        const sizeLine = await this.#line();
        if (sizeLine === undefined) {
          truncated = true;
          break;
        }
        const size = parseInt(sizeLine, 16);
        if (size === 0) {
          while ((await this.#line()) ?? "") {} // trailers, up to the empty line
          break;
        }
        const data = await this.#take(size + 2);
        if (!data) {
          truncated = true;
          chunks.push(this.#buf);
          this.#buf = Buffer.alloc(0);
          break;
        }
        chunks.push(data.subarray(0, size));
      }
    } else if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      const data = await this.#take(n);
      if (data) chunks.push(data);
      else {
        truncated = true;
        chunks.push(this.#buf);
        this.#buf = Buffer.alloc(0);
      }
    } else {
      while (await this.#more()) {}
      chunks.push(this.#buf);
      this.#buf = Buffer.alloc(0);
    }
    if (truncated || /\bclose\b/i.test(headers.connection ?? "")) this.close();
    return { status, headers, head, body: Buffer.concat(chunks), truncated };
  }
}

/**
 * Strings an answer must never contain for `secret`: the whole of it and every 12-character
 * window at a stride of 4, so a truncated or partly echoed secret is caught too.
 */
export function fragments(...secrets: string[]): string[] {
  const out = new Set<string>();
  for (const s of secrets) {
    if (s.length <= 12) {
      out.add(s);
      continue;
    }
    for (let i = 0; i + 12 <= s.length; i += 4) out.add(s.slice(i, i + 12));
    out.add(s.slice(-12));
  }
  return [...out];
}

/** Fails when any fragment occurs in `text`; `what` names the answer. */
export function expectNoFragment(text: string, frags: readonly string[], what: string): void {
  for (const f of frags) if (text.includes(f)) expect.fail(`${what} contains secret fragment ${JSON.stringify(f)}`);
}

export const rssMb = (): number => Math.round(process.memoryUsage().rss / (1024 * 1024));

/** When this module was loaded: about when the test file started (each file has its own worker state). */
const started = { cpu: process.cpuUsage(), wall: performance.now() };

/** Prints this file's generated cases and records them for the run's total (fuzz-summary.ts). */
export function reportCases(kind: "fuzz" | "faults", file: string, n: number): void {
  const cpu = process.cpuUsage(started.cpu);
  const cpuS = ((cpu.user + cpu.system) / 1e6).toFixed(1);
  const wallS = ((performance.now() - started.wall) / 1000).toFixed(1);
  console.log(`${kind}: ${n} cases (${file}, ${wallS} s, ${cpuS} s CPU)`);
  const dir = inject("caseCountDir");
  if (dir) appendFileSync(join(dir, `${kind}.txt`), `${file} ${n}\n`);
}

/** encodeURIComponent for any string: lone surrogates (which it refuses) become U+FFFD first. */
export function encodeAny(s: string): string {
  return encodeURIComponent(s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD"));
}
