/**
 * How a relayed WebSocket session's messages are read (issue 25): the model a client asks for
 * (for pins, before it reaches the provider), the usage a provider reports (for the budget and
 * the usage record), and the error event a cap is announced with, in the provider's own shape.
 * Messages pass through unchanged; a reader only looks, and parses a message only when a cheap
 * byte search says it may matter (audio travels as large base64 messages).
 */
import type { RelayError } from "../errors.js";
import type { ApiShape, Usage } from "../providers/types.js";

/** A model a message names but the relay cannot read (not a string): refused under a pin. */
export const UNREADABLE_MODEL = Symbol("unreadable model");

export type NamedModel = string | typeof UNREADABLE_MODEL | undefined;

/** One session's reader: it keeps the metered usage. */
export interface SessionReader {
  /** The model a client message asks the session to run on; undefined when it names none. */
  clientModel(data: Buffer): NamedModel;
  /** Reads a provider message for usage. */
  server(data: Buffer): void;
  /** Usage reported so far (summed over responses or turns). */
  usage(): Usage | undefined;
  /** A response is under way whose usage has not been reported yet. */
  busy(): boolean;
}

export interface RealtimeFraming {
  /** Models the upgrade's query names: a pin must allow each (OpenAI `model`, Azure `deployment`). */
  queryModels(query: URLSearchParams): string[];
  /** The first client message names the model (Gemini's `setup`): it is read before the provider is dialled. */
  modelInFirstMessage: boolean;
  /**
   * Headers for the provider from the client's subprotocols (no subprotocol is forwarded: the
   * relay answers the client itself, and a provider that selects none would fail the dial).
   */
  upstreamHeaders(protocols: readonly string[]): Record<string, string>;
  /** The event a cap is announced with before the close, in the provider's shape. */
  errorEvent(err: RelayError, shape: ApiShape): string;
  reader(): SessionReader;
}

/** JSON.parse without throwing: a message the relay cannot parse is the provider's to refuse. */
export function parseJson(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString("utf8"));
  } catch {
    return undefined;
  }
}

/** JSON's whitespace (RFC 8259 2). */
const JSON_SPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * Whether a message can be a JSON object in UTF-8, as the readers read it: its first byte past
 * JSON whitespace opens an object, and it has no NUL byte (UTF-8 JSON has none: a control
 * character in a string is escaped). A UTF-16 or UTF-32 message, or one behind a byte-order
 * mark, is not: the readers' byte search and JSON.parse would miss a model a lenient provider
 * reads (Python's json.loads detects those encodings). Cheap: a scan for one byte.
 */
export function plainJsonObject(data: Buffer): boolean {
  let i = 0;
  while (i < data.length && JSON_SPACE.has(data[i]!)) i++;
  return data[i] === 0x7b && data.indexOf(0, i) === -1;
}

/** A message may name a key in an escaped form (`"mod\u0065l"`): such a message is always parsed. */
export const ESCAPE = Buffer.from("\\u");
