/**
 * A request body that streams through to the provider instead of being held whole (issue 25):
 * multipart forms (transcriptions, image edits, file uploads) and binary bodies (audio/*,
 * image/*, video/*, application/octet-stream, and the bytes of a resumable upload). The relay
 * reads a bounded head of it before the call is counted (the policy's fields), then hands the
 * provider that head and the rest as the client sends it, counting bytes against the limit
 * and passing each chunk by the multipart watch. The bytes are never changed.
 *
 * Backpressure is the client's socket: a chunk is read only when the upstream request asks
 * for one, so the relay holds the head and a chunk or two, whatever the body's size.
 */
import { Readable } from "node:stream";
import { RelayError } from "../errors.js";
import type { ApiShape } from "../providers/types.js";
import type { HeaderInput } from "./headers.js";
import { ClientGone, type StreamedBody } from "./upstream-client.js";

/** Bytes of an upload read (and held, charged to the body budget) before it is sent: a form's leading fields. */
export const UPLOAD_HEAD_BYTES = 64 * 1024;

/** What an upload body is, for the policy: a form, opaque bytes, or a resumable upload's bytes. */
export type UploadKind = "multipart" | "binary" | "resumable";

const BINARY = /^(?:audio|image|video)\/|^application\/octet-stream$/;

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}

/**
 * Whether a request's body streams, and as what. A coded body (`Content-Encoding`) is decoded
 * and read whole as before (src/relay/request-body.ts); so is anything else, JSON above all.
 */
export function uploadKindOf(shape: ApiShape, path: string, headers: HeaderInput): UploadKind | undefined {
  const coding = one(headers["content-encoding"])?.trim().toLowerCase();
  if (coding !== undefined && coding !== "" && coding !== "identity") return undefined;
  const transfer =
    one(headers["transfer-encoding"])
      ?.toLowerCase()
      .split(",")
      .map((c) => c.trim())
      .filter(Boolean) ?? [];
  if (transfer.some((c) => c !== "chunked")) return undefined;
  const type = (one(headers["content-type"]) ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "multipart/form-data") return "multipart";
  // The upload command of a resumable upload carries the file's bytes, whatever they are
  // (a JSON file too), to a path that only stores them (the shape's rawPaths).
  const command = one(headers["x-goog-upload-command"])?.toLowerCase() ?? "";
  if (shape.uploads?.rawPaths.test(path) === true && /\bupload\b/.test(command)) return "resumable";
  return BINARY.test(type) ? "binary" : undefined;
}

/** A body that ended while being read, or a client that went away, ends the call. */
const clientGone = (): ClientGone => new ClientGone();

export class UploadBody implements StreamedBody {
  /** The chunks read before sending (the head), kept to be sent first. */
  readonly #head: Buffer[] = [];
  #headBytes = 0;
  #queue: Buffer[] = [];
  #ended = false;
  #failed = false;
  #wake: (() => void) | undefined;
  /** A chunk after the head was handed on: another attempt could not send the body again. */
  #spent = false;
  #released = false;
  #limit = Number.POSITIVE_INFINITY;
  #watch: ((chunk: Buffer) => void) | undefined;

  constructor(
    private readonly source: Readable,
    /** The declared length (`Content-Length`), when there is one. */
    readonly length: number | undefined,
    readonly kind: UploadKind,
    readonly contentType: string,
  ) {
    source.on("data", this.#onData);
    source.on("end", this.#onEnd);
    source.on("error", this.#onFail);
    source.on("close", this.#onClose);
    source.pause();
  }

  /** The bytes read so far (the head) as one buffer. */
  get head(): Buffer {
    return this.#head.length === 1 ? this.#head[0]! : Buffer.concat(this.#head, this.#headBytes);
  }

  get ended(): boolean {
    return this.#ended && this.#queue.length === 0;
  }

  /** Whether a new attempt can still send the whole body (nothing past the head went out). */
  get replayable(): boolean {
    return !this.#spent && !this.#released;
  }

  /** Reads one more chunk into the head; false when the body has ended. */
  async readMore(): Promise<boolean> {
    const chunk = await this.#next();
    if (chunk === null) return false;
    this.#count(chunk, this.#headBytes);
    this.#head.push(chunk);
    this.#headBytes += chunk.length;
    return true;
  }

  /** At most `limit` bytes in all, the head included: a 413 past it, however far the body got. */
  limit(limit: number): void {
    this.#limit = limit;
    if (this.#headBytes > limit) throw tooLarge();
  }

  /** Shows every chunk to `watch` before it is sent, the head's at once (it throws to cut the upload). */
  watch(watch: (chunk: Buffer) => void): void {
    this.#watch = watch;
    for (const c of this.#head) watch(c);
  }

  /** The body for one upstream attempt: the head, then the rest as the upstream reads it. */
  open(): Readable {
    if (!this.replayable) throw new RelayError("upstream_unreachable", "request body already sent");
    return Readable.from(this.#chunks(), { objectMode: false, highWaterMark: 16 * 1024 });
  }

  /** Lets go of the client's stream, then rethrows `e` (for a `catch`). */
  readonly fail = (e: unknown): never => {
    this.release();
    throw e;
  };

  /** Lets the client's stream go (the caller discards or reads what is left); returns `value`. */
  release<T = void>(value?: T): T {
    if (this.#released) return value as T;
    this.#released = true;
    this.source.off("data", this.#onData);
    this.source.off("end", this.#onEnd);
    this.source.off("error", this.#onFail);
    this.source.off("close", this.#onClose);
    this.#queue = [];
    this.#wake?.();
    return value as T;
  }

  async *#chunks(): AsyncGenerator<Buffer> {
    for (const c of this.#head) yield c;
    let seen = this.#headBytes;
    // From here on the client's stream is this attempt's: no other may read it.
    if (!this.ended) this.#spent = true;
    for (;;) {
      const chunk = await this.#next();
      if (chunk === null) return;
      this.#count(chunk, seen);
      seen += chunk.length;
      this.#watch?.(chunk);
      yield chunk;
    }
  }

  #count(chunk: Buffer, before: number): void {
    if (before + chunk.length > this.#limit) throw tooLarge();
  }

  async #next(): Promise<Buffer | null> {
    for (;;) {
      if (this.#released) throw clientGone();
      const chunk = this.#queue.shift();
      if (chunk !== undefined) return chunk;
      if (this.#ended) return null;
      if (this.#failed) throw clientGone();
      const woken = new Promise<void>((resolve) => (this.#wake = resolve));
      this.source.resume();
      await woken;
    }
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#queue.push(chunk);
    this.source.pause();
    this.#wakeUp();
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#wakeUp();
  };

  readonly #onFail = (): void => {
    this.#failed = true;
    this.#wakeUp();
  };

  /** `close` before `end`: the body was cut short. */
  readonly #onClose = (): void => {
    if (!this.#ended) this.#onFail();
  };

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

export const tooLarge = (): RelayError => new RelayError("payload_too_large", "request body too large");
