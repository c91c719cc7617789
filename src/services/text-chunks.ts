/**
 * The answer's bytes as UTF-8 text, chunk by chunk, for RelayService's `text_chunks` (issue 26).
 * A multi-byte character split between two upstream reads (an SSE frame cut by TCP anywhere)
 * is held back and sent whole with the next piece; bytes that are not UTF-8 are refused, never
 * replaced with U+FFFD, so a client never reads garbled text it cannot tell from the real one.
 */
import { RelayError } from "../errors.js";

/** Fixed text of the refusal: `End.error` and the INVALID_ARGUMENT message. */
export const NOT_UTF8 = "answer is not valid UTF-8 text; call without text_chunks for its bytes";

export class TextChunks {
  // fatal: invalid bytes throw instead of becoming U+FFFD. ignoreBOM: a leading byte-order mark
  // is part of the provider's answer and is kept (U+FEFF), not silently stripped.
  readonly #decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  #failed = false;

  /** Whether a piece was refused: the text stream is over. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * The whole characters of `chunk` (with any held-back bytes before it); an incomplete
   * trailing sequence waits for the next chunk. Throws a `bad_request` RelayError on bytes
   * that can never be UTF-8.
   */
  push(chunk: Uint8Array): string {
    if (this.#failed) throw notUtf8();
    try {
      return this.#decoder.decode(chunk, { stream: true });
    } catch (e) {
      this.#failed = true;
      throw notUtf8(e);
    }
  }

  /**
   * Ends the text: an answer that stopped inside a character is not UTF-8 (throws), unless
   * `cut` says the stream was cut short, where a partial character is expected and dropped.
   */
  end(cut: boolean): void {
    if (this.#failed) return;
    try {
      // Never text here: `push` already returned every whole character.
      this.#decoder.decode();
    } catch (e) {
      if (cut) return;
      this.#failed = true;
      throw notUtf8(e);
    }
  }
}

/** A UTF-16 surrogate without its pair: a string that has no UTF-8 form. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * `body_text` as the UTF-8 bytes sent upstream. A lone surrogate (JSON allows `"\ud800"`) has
 * no UTF-8 form and would go out as U+FFFD, a body the client never wrote: refused instead.
 */
export function utf8Body(text: string): Buffer {
  if (LONE_SURROGATE.test(text)) throw new RelayError("bad_request", "body_text is not valid UTF-8 text");
  return Buffer.from(text, "utf8");
}

function notUtf8(cause?: unknown): RelayError {
  return new RelayError("bad_request", NOT_UTF8, cause === undefined ? {} : { cause });
}
