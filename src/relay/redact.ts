/**
 * Redaction of the upstream key from a provider's error answer (issue 17, finding 7b). Some
 * providers echo the key they were sent in an error body ("Incorrect API key provided: sk-...")
 * or in `WWW-Authenticate`; the relay forwards error answers, so the key would reach the token
 * holder, who must never see it (DESIGN 12).
 *
 * Only error answers (status >= 400) are scanned, never successful streams: the scan is bounded
 * (ERROR_BODY_LIMIT bytes), and an error body longer than that is cut there, not forwarded
 * unscanned. The body is scanned as it streams: the last bytes of each chunk that could begin a
 * key are held back until the next chunk shows whether they do, so a key split across chunks is
 * caught too.
 */

export const REDACTED = "[redacted]";
/** Error bodies are small (OpenAI's ~200 bytes); past this the relay cuts them. */
export const ERROR_BODY_LIMIT = 64 * 1024;

const REDACTED_BYTES = Buffer.from(REDACTED);
const EMPTY = Buffer.alloc(0);

/** The forms a key can be echoed in: as sent, and percent-encoded (a query parameter echoed back). */
function formsOf(key: string): string[] {
  const encoded = encodeURIComponent(key);
  return encoded === key ? [key] : [key, encoded];
}

/** `headers` with every form of `key` in a value replaced. */
export function redactHeaders(headers: Record<string, string | string[]>, key: string): Record<string, string | string[]> {
  if (key === "") return headers;
  const forms = formsOf(key);
  const scrub = (v: string): string => forms.reduce((acc, f) => (acc.includes(f) ? acc.split(f).join(REDACTED) : acc), v);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const v = headers[name]!;
    out[name] = Array.isArray(v) ? v.map(scrub) : scrub(v);
  }
  return out;
}

/** Streams an error body through with the key replaced; see the module comment. */
export class BodyRedactor {
  readonly #needles: Buffer[];
  /** Bytes held back at the end of what was seen: a key could start in them. */
  readonly #hold: number;
  #pending: Buffer = EMPTY;
  #seen = 0;
  #cut = false;

  constructor(
    key: string,
    private readonly limit = ERROR_BODY_LIMIT,
  ) {
    this.#needles = key === "" ? [] : formsOf(key).map((f) => Buffer.from(f));
    this.#hold = Math.max(0, ...this.#needles.map((n) => n.length - 1));
  }

  /** True once the body passed the limit: the rest must not be forwarded. */
  get cut(): boolean {
    return this.#cut;
  }

  /** The bytes of `chunk` (and of earlier held-back bytes) that may be forwarded now. */
  feed(chunk: Buffer): Buffer {
    if (this.#cut) return EMPTY;
    let data = chunk;
    if (this.#seen + chunk.length > this.limit) {
      data = chunk.subarray(0, Math.max(0, this.limit - this.#seen));
      this.#cut = true;
    }
    this.#seen += data.length;
    // At the cut the held-back tail is dropped: it may be the first part of a key.
    return this.#scan(this.#pending.length === 0 ? data : Buffer.concat([this.#pending, data]), this.#cut);
  }

  /** What was held back, once the body ended whole. */
  end(): Buffer {
    if (this.#cut) return EMPTY;
    const rest = this.#pending;
    this.#pending = EMPTY;
    return this.#scan(rest, false, true);
  }

  #scan(data: Buffer, dropTail: boolean, final = false): Buffer {
    const parts: Buffer[] = [];
    let from = 0;
    for (;;) {
      const [at, length] = this.#next(data, from);
      if (at === -1) break;
      parts.push(data.subarray(from, at), REDACTED_BYTES);
      from = at + length;
    }
    // No whole key starts at or after `from`; one could still start in the last #hold bytes.
    const keep = final ? 0 : Math.min(this.#hold, data.length - from);
    parts.push(data.subarray(from, data.length - keep));
    // Copied: a held-back slice must not pin the (possibly large) chunk it came from.
    this.#pending = keep === 0 || dropTail ? EMPTY : Buffer.from(data.subarray(data.length - keep));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** The earliest occurrence of any form at or after `from`: [index, length], or [-1, 0]. */
  #next(data: Buffer, from: number): [number, number] {
    let best: [number, number] = [-1, 0];
    for (const n of this.#needles) {
      const at = data.indexOf(n, from);
      if (at !== -1 && (best[0] === -1 || at < best[0])) best = [at, n.length];
    }
    return best;
  }
}
