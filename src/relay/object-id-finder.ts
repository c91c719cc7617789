/**
 * Finds the id of a created object in its answer as the bytes go by (issue 25, item 3), without
 * holding the answer back or keeping it: in a JSON answer the string at a key path, read by a
 * small scanner that keeps only the keys on its way and the id itself; in an event stream the
 * first event that names one. Both give up past MAX_SCAN_BYTES (ids come first in every answer
 * the rules name) and stop reading once they found it.
 */
import { SseEvents } from "../providers/shapes/stream-frames.js";
import { stringAt } from "../providers/owned-objects.js";

/** Bytes of an answer read for its id at most. */
export const MAX_SCAN_BYTES = 1024 * 1024;
/** Keys and ids longer than this are not ids the rules name (OpenAI's are ~60 characters). */
const MAX_STRING_BYTES = 512;

export interface IdFinder {
  /** Reads the next bytes; returns the id once it was found in them (then never again). */
  feed(chunk: Buffer): string | undefined;
}

/** The finder for an answer of this content type, when one can name the id. */
export function idFinderFor(contentType: string | undefined, idAt: readonly string[], eventIdAt: readonly string[] | undefined): IdFinder | undefined {
  const type = contentType?.toLowerCase() ?? "";
  if (type.includes("text/event-stream")) return eventIdAt === undefined ? undefined : new EventIdFinder(eventIdAt);
  return type.includes("json") ? new JsonStringFinder(idAt) : undefined;
}

/** The first server-sent event whose JSON data has a string at `path`. */
class EventIdFinder implements IdFinder {
  #found: string | undefined;
  #done = false;
  #seen = 0;
  readonly #events: SseEvents;

  constructor(path: readonly string[]) {
    this.#events = new SseEvents(MAX_SCAN_BYTES, (data) => {
      if (this.#found !== undefined) return;
      try {
        this.#found = stringAt(JSON.parse(data.join("\n")), path);
      } catch {
        // Not JSON (a comment, a keep-alive): the next event may name it.
      }
    });
  }

  feed(chunk: Buffer): string | undefined {
    if (this.#done) return undefined;
    this.#seen += chunk.length;
    this.#events.feed(this.#seen > MAX_SCAN_BYTES ? chunk.subarray(0, chunk.length - (this.#seen - MAX_SCAN_BYTES)) : chunk);
    if (this.#found !== undefined || this.#seen >= MAX_SCAN_BYTES) this.#done = true;
    return this.#found;
  }
}

const enum Mode {
  Value,
  Key,
  Colon,
  After,
  String,
  Literal,
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The string at a key path of a JSON object. Tracks nesting, strings and escapes byte by byte;
 * holds the keys of the objects on the current path (bounded) and the id's bytes, nothing else.
 */
export class JsonStringFinder implements IdFinder {
  #done = false;
  #seen = 0;
  #mode = Mode.Value;
  /** Open containers: true for an object. */
  readonly #stack: boolean[] = [];
  /** The current key of each open object on the path (undefined: not one the path names). */
  readonly #keys: (string | undefined)[] = [];
  #isKey = false;
  #escaped = false;
  /** Bytes of the string being read, when it is a key on the path or the id; else undefined. */
  #text: number[] | undefined;

  constructor(private readonly path: readonly string[]) {}

  feed(chunk: Buffer): string | undefined {
    if (this.#done) return undefined;
    const end = Math.min(chunk.length, MAX_SCAN_BYTES - this.#seen);
    this.#seen += end;
    for (let i = 0; i < end && !this.#done; i++) {
      const found = this.#byte(chunk[i]!);
      if (found !== undefined) {
        this.#done = true;
        return found;
      }
    }
    if (this.#seen >= MAX_SCAN_BYTES) this.#done = true;
    return undefined;
  }

  #byte(b: number): string | undefined {
    switch (this.#mode) {
      case Mode.String:
        return this.#stringByte(b);
      case Mode.Literal:
        if (b !== 0x2c && b !== 0x7d && b !== 0x5d && !isSpace(b)) return undefined;
        this.#mode = Mode.After;
        return this.#byte(b);
      case Mode.Colon:
        if (b === 0x3a) this.#mode = Mode.Value;
        else if (!isSpace(b)) this.#done = true;
        return undefined;
      case Mode.Key:
        if (b === QUOTE) this.#openString(true);
        else if (b === 0x7d) this.#close();
        else if (!isSpace(b)) this.#done = true;
        return undefined;
      case Mode.After:
        if (b === 0x2c) this.#mode = this.#stack.at(-1) === true ? Mode.Key : Mode.Value;
        else if (b === 0x7d || b === 0x5d) this.#close();
        else if (!isSpace(b)) this.#done = true;
        return undefined;
      case Mode.Value:
        if (isSpace(b)) return undefined;
        if (b === QUOTE) this.#openString(false);
        else if (b === 0x7b || b === 0x5b) {
          // Only an object at the top: anything else names no id.
          if (this.#stack.length === 0 && b !== 0x7b) this.#done = true;
          this.#stack.push(b === 0x7b);
          this.#keys.push(undefined);
          this.#mode = b === 0x7b ? Mode.Key : Mode.Value;
        } else if (b === 0x5d && this.#stack.at(-1) === false) this.#close();
        else if (this.#stack.length === 0) this.#done = true;
        else this.#mode = Mode.Literal;
        return undefined;
    }
  }

  #openString(isKey: boolean): void {
    this.#isKey = isKey;
    this.#escaped = false;
    this.#mode = Mode.String;
    const depth = this.#stack.length;
    // Keys matter only on the path's levels; a value only at its end, inside objects all along.
    const wanted = isKey ? depth <= this.path.length : depth === this.path.length && this.#onPath();
    this.#text = wanted ? [] : undefined;
  }

  #stringByte(b: number): string | undefined {
    if (this.#escaped) this.#escaped = false;
    else if (b === BACKSLASH) this.#escaped = true;
    else if (b === QUOTE) return this.#closeString();
    if (this.#text !== undefined) {
      if (this.#text.length < MAX_STRING_BYTES) this.#text.push(b);
      else this.#text = undefined;
    }
    return undefined;
  }

  #closeString(): string | undefined {
    const text = this.#text === undefined ? undefined : decode(this.#text);
    this.#text = undefined;
    if (this.#isKey) {
      this.#keys[this.#keys.length - 1] = text;
      this.#mode = Mode.Colon;
      return undefined;
    }
    this.#mode = Mode.After;
    return text === "" ? undefined : text;
  }

  #close(): void {
    this.#stack.pop();
    this.#keys.pop();
    this.#mode = Mode.After;
    // The top-level object ended without the id.
    if (this.#stack.length === 0) this.#done = true;
  }

  #onPath(): boolean {
    return this.path.every((key, i) => this.#stack[i] === true && this.#keys[i] === key);
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** A JSON string's bytes (escapes included) as its text; undefined when they are not valid. */
function decode(bytes: number[]): string | undefined {
  try {
    return JSON.parse(`"${Buffer.from(bytes).toString("utf8")}"`) as string;
  } catch {
    return undefined;
  }
}
