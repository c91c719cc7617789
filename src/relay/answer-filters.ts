/**
 * Rewrites of a successful answer the relay owes its client because of a change it made itself
 * (issue 21.8): the metering already read the raw bytes, these shape what is forwarded.
 *
 * - UsageChunkFilter: when the relay spliced `stream_options.include_usage` into an OpenAI-shape
 *   stream the client did not ask for it, so the usage-only chunk (`choices: []`) is the relay's
 *   and is dropped: client code reading `chunk.choices[0]` would crash on it. Frame-aware (a frame
 *   may be split across chunks); every other byte passes unchanged, and a frame is held back only
 *   until its blank line arrives.
 * - ModelListFilter: the path-less model list (`GET /v1/models`) on a model-pinned token is read
 *   whole (bounded) and only the pinned models are kept, so the SDKs' `models.list()` works.
 */

/** Fed the answer's bytes in order; returns what to forward now; `end` flushes the rest. */
export interface AnswerFilter {
  /** Whether an answer of this content type is one the filter reads (any other passes as is). */
  accepts(contentType: string | undefined): boolean;
  feed(chunk: Buffer): Buffer;
  end(): Buffer;
}

const EMPTY = Buffer.alloc(0);
const CR = 0x0d;
const LF = 0x0a;
/**
 * An incomplete frame longer than this is forwarded as is and the filter stops: no usage chunk
 * is that long, and holding more would buffer an answer the client is waiting for.
 */
const MAX_FRAME_BYTES = 256 * 1024;

export class UsageChunkFilter implements AnswerFilter {
  #pending: Buffer = EMPTY;
  #off = false;

  accepts(contentType: string | undefined): boolean {
    return contentType?.toLowerCase().includes("text/event-stream") === true;
  }

  feed(chunk: Buffer): Buffer {
    if (this.#off) return chunk;
    const buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: Buffer[] = [];
    let start = 0;
    for (const end of frameEnds(buf)) {
      const frame = buf.subarray(start, end);
      if (!isUsageOnly(frame)) out.push(frame);
      start = end;
    }
    this.#pending = buf.subarray(start);
    if (this.#pending.length > MAX_FRAME_BYTES) {
      out.push(this.#pending);
      this.#pending = EMPTY;
      this.#off = true;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  end(): Buffer {
    // A last frame without its blank line is still an event to an SSE reader at end of stream.
    const rest = this.#pending;
    this.#pending = EMPTY;
    return rest.length > 0 && isUsageOnly(rest) ? EMPTY : rest;
  }
}

/**
 * Offsets just past each frame's blank line (lines end in CRLF, LF or CR, per the SSE spec). A
 * CR at the very end stays undecided: its LF may come in the next chunk.
 */
function frameEnds(buf: Buffer): number[] {
  const ends: number[] = [];
  let lineEmpty = true;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b !== CR && b !== LF) {
      lineEmpty = false;
      continue;
    }
    if (b === CR) {
      if (i + 1 === buf.length) break;
      if (buf[i + 1] === LF) i++;
    }
    if (lineEmpty) ends.push(i + 1);
    lineEmpty = true;
  }
  return ends;
}

/** A `data:` event whose JSON has `choices: []` and a usage object: the usage-only chunk. */
function isUsageOnly(frame: Buffer): boolean {
  const text = frame.toString("utf8");
  if (!text.includes('"choices"')) return false;
  const data = text
    .split(/\r\n|\r|\n/)
    .filter((l) => l.startsWith("data:"))
    .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5))
    .join("\n");
  try {
    const v: unknown = JSON.parse(data);
    if (typeof v !== "object" || v === null) return false;
    const o = v as { choices?: unknown; usage?: unknown };
    return Array.isArray(o.choices) && o.choices.length === 0 && typeof o.usage === "object" && o.usage !== null;
  } catch {
    return false;
  }
}

/** A model list is small; one larger than this is not read further and answers no model. */
const MAX_LIST_BYTES = 4 * 1024 * 1024;
const NO_MODELS = Buffer.from('{"object":"list","data":[]}');

export class ModelListFilter implements AnswerFilter {
  #parts: Buffer[] = [];
  #size = 0;

  constructor(private readonly allowed: ReadonlySet<string>) {}

  accepts(contentType: string | undefined): boolean {
    return contentType?.toLowerCase().includes("json") === true;
  }

  feed(chunk: Buffer): Buffer {
    this.#size += chunk.length;
    if (this.#size <= MAX_LIST_BYTES) this.#parts.push(chunk);
    return EMPTY;
  }

  /** The list with only the pinned models; anything unreadable fails closed to an empty list. */
  end(): Buffer {
    if (this.#size > MAX_LIST_BYTES) return NO_MODELS;
    try {
      const v: unknown = JSON.parse(Buffer.concat(this.#parts).toString("utf8"));
      if (typeof v !== "object" || v === null || !Array.isArray((v as { data?: unknown }).data)) return NO_MODELS;
      const list = v as { data: unknown[] };
      const data = list.data.filter((m) => typeof m === "object" && m !== null && this.allowed.has(String((m as { id?: unknown }).id)));
      return Buffer.from(JSON.stringify({ ...list, data }));
    } catch {
      return NO_MODELS;
    }
  }
}
