/**
 * Frames of a streamed answer, cut from its bytes however the network splits them (issue 18,
 * finding 2): lines (NDJSON), server-sent events (text/event-stream) and the elements of a
 * JSON array streamed one by one (Gemini's streamGenerateContent without alt=sse). Work on
 * bytes, not on text decoded chunk by chunk, so a multi-byte character cut between two chunks
 * arrives whole; memory is bounded per frame, and a frame past the bound is skipped, not kept.
 */

const LF = 0x0a;
const CR = 0x0d;

/** Cuts a byte stream into lines (LF or CRLF), each handed on without its end. */
export class LineSplitter {
  #parts: Buffer[] = [];
  #size = 0;
  /** The line being read is past the bound: its bytes are dropped up to its end. */
  #skipping = false;

  constructor(
    private readonly maxLine: number,
    private readonly onLine: (line: Buffer) => void,
  ) {}

  feed(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(LF, start); nl !== -1; nl = chunk.indexOf(LF, start)) {
      let line: Buffer | undefined = chunk.subarray(start, nl);
      // A line whole in this chunk is handed on as a view, with no copy (the common case).
      if (this.#skipping || this.#size > 0) {
        this.#take(line);
        line = this.#skipping ? undefined : Buffer.concat(this.#parts, this.#size);
      } else if (line.length > this.maxLine) line = undefined;
      this.#parts = [];
      this.#size = 0;
      this.#skipping = false;
      if (line !== undefined) this.onLine(line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line);
      start = nl + 1;
    }
    if (start < chunk.length) this.#take(chunk.subarray(start));
  }

  /** The last line, when the stream ended without a line end. */
  end(): void {
    if (this.#size > 0 && !this.#skipping) this.onLine(Buffer.concat(this.#parts, this.#size));
    this.#parts = [];
    this.#size = 0;
  }

  #take(bytes: Buffer): void {
    if (this.#skipping || bytes.length === 0) return;
    this.#size += bytes.length;
    if (this.#size > this.maxLine) {
      this.#skipping = true;
      this.#parts = [];
      return;
    }
    // A view: the HTTP client hands on fresh buffers and does not reuse them.
    this.#parts.push(bytes);
  }
}

/**
 * Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html): the
 * `data:` lines of one event are joined with LF and handed on when the blank line ends it.
 * Other fields (`event:`, `id:`, comments) are not needed for usage and are ignored.
 */
export class SseEvents {
  readonly #lines: LineSplitter;
  #data: string[] = [];
  #size = 0;

  constructor(
    private readonly maxEvent: number,
    private readonly onEvent: (data: string[]) => void,
  ) {
    this.#lines = new LineSplitter(maxEvent, (line) => this.#line(line));
  }

  feed(chunk: Buffer): void {
    this.#lines.feed(chunk);
  }

  /** Ends the stream: an event still open (no blank line after it) is handed on too. */
  end(): void {
    this.#lines.end();
    this.#dispatch();
  }

  #line(line: Buffer): void {
    if (line.length === 0) {
      this.#dispatch();
      return;
    }
    // "data:" then one optional space; a line of only "data" is an empty data field.
    if (line.length < 5 || line[0] !== 0x64 || line[1] !== 0x61 || line[2] !== 0x74 || line[3] !== 0x61 || line[4] !== 0x3a) return;
    const value = line.subarray(line[5] === 0x20 ? 6 : 5);
    this.#size += value.length;
    if (this.#size > this.maxEvent) return;
    this.#data.push(value.toString("utf8"));
  }

  #dispatch(): void {
    const data = this.#data;
    const whole = this.#size <= this.maxEvent;
    this.#data = [];
    this.#size = 0;
    if (data.length > 0 && whole) this.onEvent(data);
  }
}

/**
 * The elements of a top-level JSON array, each handed on as soon as its last byte arrives; a
 * body that is not an array (a JSON object) is reported as `whole` by the caller instead. Tracks
 * strings and escapes, so brackets inside text do not count.
 */
export class JsonArrayElements {
  /** "start": before the first significant byte; "array": inside the top-level array; "other": not an array. */
  #state: "start" | "array" | "other" = "start";
  #depth = 0;
  #inString = false;
  #escaped = false;
  #parts: Buffer[] = [];
  #size = 0;
  #skipping = false;

  constructor(
    private readonly maxElement: number,
    private readonly onElement: (element: Buffer) => void,
  ) {}

  /** Whether the body began as something other than an array. */
  get notArray(): boolean {
    return this.#state === "other";
  }

  feed(chunk: Buffer): void {
    let i = 0;
    if (this.#state === "start") {
      while (i < chunk.length && isSpace(chunk[i]!)) i++;
      if (i === chunk.length) return;
      this.#state = chunk[i] === 0x5b ? "array" : "other";
      i++;
    }
    if (this.#state !== "array") return;
    let from = this.#depth > 0 ? i : -1;
    for (; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (b === 0x5c) this.#escaped = true;
        else if (b === 0x22) this.#inString = false;
        continue;
      }
      if (b === 0x22) {
        this.#inString = true;
      } else if (b === 0x7b || b === 0x5b) {
        if (this.#depth++ === 0) from = i;
      } else if ((b === 0x7d || b === 0x5d) && this.#depth > 0) {
        if (--this.#depth === 0) {
          this.#take(chunk.subarray(from, i + 1));
          this.#emit();
          from = -1;
        }
      }
    }
    if (from !== -1 && this.#depth > 0) this.#take(chunk.subarray(from));
  }

  #take(bytes: Buffer): void {
    if (this.#skipping) return;
    this.#size += bytes.length;
    if (this.#size > this.maxElement) {
      this.#skipping = true;
      this.#parts = [];
      return;
    }
    this.#parts.push(bytes);
  }

  #emit(): void {
    const element = this.#skipping ? undefined : Buffer.concat(this.#parts, this.#size);
    this.#parts = [];
    this.#size = 0;
    this.#skipping = false;
    if (element !== undefined) this.onElement(element);
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}
