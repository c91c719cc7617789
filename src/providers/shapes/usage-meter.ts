/**
 * The shared part of usage metering: SSE streams are split into lines and only `data:` lines
 * that mention usage are parsed; JSON answers are kept (up to a bound) and parsed once at the
 * end. What a usage object looks like is the shape's business (`read`).
 */
import type { Usage, UsageMeter } from "../types.js";

/** Folds one parsed JSON value into the usage seen so far. */
export type UsageReader = (value: unknown, seen: Usage | undefined) => Usage | undefined;

const MAX_JSON_BYTES = 4 * 1024 * 1024;
const MAX_LINE = 1024 * 1024;

/** Says whether an SSE `data:` line may carry usage and is worth parsing. */
export type UsageLineFilter = (line: string) => boolean;

export function createUsageMeter(contentType: string | undefined, read: UsageReader, wants: UsageLineFilter): UsageMeter {
  if (contentType?.includes("text/event-stream")) return new SseMeter(read, wants);
  if (contentType?.includes("json")) return new JsonMeter(read);
  return NO_METER;
}

const NO_METER: UsageMeter = { feed() {}, result: () => undefined };

class SseMeter implements UsageMeter {
  #rest = "";
  #usage: Usage | undefined;
  constructor(
    private readonly read: UsageReader,
    private readonly wants: UsageLineFilter,
  ) {}

  feed(chunk: Buffer): void {
    const text = this.#rest + chunk.toString("utf8");
    let start = 0;
    for (let nl = text.indexOf("\n", start); nl !== -1; nl = text.indexOf("\n", start)) {
      this.#line(text.slice(start, nl));
      start = nl + 1;
    }
    this.#rest = text.length - start > MAX_LINE ? "" : text.slice(start);
  }

  #line(line: string): void {
    if (!line.startsWith("data:") || !this.wants(line)) return;
    try {
      this.#usage = this.read(JSON.parse(line.slice(5)), this.#usage);
    } catch {
      // A malformed event is the client's to see; metering just skips it.
    }
  }

  result(): Usage | undefined {
    return this.#usage;
  }
}

class JsonMeter implements UsageMeter {
  #chunks: Buffer[] = [];
  #size = 0;
  #done = false;
  #usage: Usage | undefined;
  constructor(private readonly read: UsageReader) {}

  feed(chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#size > MAX_JSON_BYTES) this.#chunks = [];
    else this.#chunks.push(chunk);
  }

  result(): Usage | undefined {
    if (!this.#done) {
      this.#done = true;
      if (this.#chunks.length > 0) {
        try {
          this.#usage = this.read(JSON.parse(Buffer.concat(this.#chunks).toString("utf8")), undefined);
        } catch {
          this.#usage = undefined;
        }
      }
      this.#chunks = [];
    }
    return this.#usage;
  }
}

export function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
