/**
 * A call that draws on a budget keeps reading its upstream answer after the client left (issue
 * 18, finding 2c): the provider bills the whole answer anyway, and its usage usually comes last
 * (OpenAI's usage chunk, Anthropic's message_delta, Gemini's final usageMetadata), so stopping
 * at the client's departure would leave the call unmetered. The rest is read without being
 * forwarded, within DRAIN_MAX_MS and DRAIN_MAX_BYTES; a call whose answer does not end within
 * them is charged its maximum (src/tokens/budget-reservations.ts). Calls without a budget stop
 * the provider call as before (DESIGN: a client that leaves stops the provider call).
 */
import { EventEmitter } from "node:events";
import type { CallSignal } from "./types.js";

/** How long an answer is read after its client left. */
export const DRAIN_MAX_MS = 30_000;
/** How many bytes of an answer are read after its client left. */
export const DRAIN_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The upstream request's abort signal: it follows the client's until the answer's head has
 * arrived (a client gone before that still stops the provider call), then lets go, so the
 * answer can be drained.
 */
export class SignalUntilAnswer extends EventEmitter {
  aborted = false;
  #unlisten: (() => void) | undefined;

  constructor(client: CallSignal) {
    super();
    if (client.aborted) {
      this.aborted = true;
      return;
    }
    const onAbort = (): void => {
      this.#unlisten = undefined;
      this.aborted = true;
      this.emit("abort");
    };
    if ("addEventListener" in client) {
      client.addEventListener("abort", onAbort, { once: true });
      this.#unlisten = () => client.removeEventListener("abort", onAbort);
    } else {
      client.once("abort", onAbort);
      this.#unlisten = () => client.off("abort", onAbort);
    }
  }

  /** Stops following the client: from now on only the relay ends the upstream call. */
  detach(): void {
    this.#unlisten?.();
    this.#unlisten = undefined;
  }
}

/** One drain's bounds, from the moment the client left. */
export class Drain {
  #bytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    onTimeout: () => void,
    maxMs = DRAIN_MAX_MS,
    private readonly maxBytes = DRAIN_MAX_BYTES,
  ) {
    this.#timer = setTimeout(onTimeout, maxMs);
    this.#timer.unref();
  }

  /** Counts bytes read and not forwarded; true once past the byte bound. */
  take(n: number): boolean {
    this.#bytes += n;
    return this.#bytes > this.maxBytes;
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}

/** Ends the upstream call of a drain past its bounds. */
export const DRAIN_CUT = new Error("answer not drained within the bounds after the client left");

/** Listens for the client's departure; returns the listener's removal. */
export function onClientGone(signal: CallSignal, gone: () => void): () => void {
  if (signal.aborted) {
    queueMicrotask(gone);
    return () => {};
  }
  if ("addEventListener" in signal) {
    signal.addEventListener("abort", gone, { once: true });
    return () => signal.removeEventListener("abort", gone);
  }
  signal.once("abort", gone);
  return () => signal.off("abort", gone);
}
