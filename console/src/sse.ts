/**
 * Reads a provider's server-sent events out of RelayService chunk bytes, which split the
 * stream anywhere (mid-line, mid-character), and picks the answer text out of each event:
 * OpenAI `choices[0].delta.content`, Anthropic `content_block_delta` `delta.text`, Gemini
 * `candidates[0].content.parts[].text`. No DOM: the tests run it in Node too.
 */

import type { ShapeName } from "../../src/providers/shape-name.js";

/** The relay's own union of API shape names (declared once, in a file with no imports). */
export type Shape = ShapeName;

export interface SseEvent {
  event: string;
  data: string;
}

/** Incremental SSE parser (WHATWG HTML, "event stream interpretation", the parts used here). */
export class SseParser {
  #decoder = new TextDecoder();
  #buffer = "";

  /** Feeds bytes; returns the events they completed. */
  push(bytes: Uint8Array): SseEvent[] {
    this.#buffer += this.#decoder.decode(bytes, { stream: true });
    return this.#drain(false);
  }

  /** Ends the stream; returns a last event that had no blank line after it. */
  end(): SseEvent[] {
    this.#buffer += this.#decoder.decode();
    return this.#drain(true);
  }

  #drain(final: boolean): SseEvent[] {
    // A CR at the very end may be the first half of a CRLF split across two chunks.
    const held = !final && this.#buffer.endsWith("\r") ? "\r" : "";
    const text = this.#buffer.slice(0, this.#buffer.length - held.length).replace(/\r\n?/g, "\n");
    const blocks = text.split("\n\n");
    this.#buffer = (final ? "" : (blocks.pop() ?? "")) + held;
    const events: SseEvent[] = [];
    for (const block of blocks) {
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length > 0) events.push({ event, data: data.join("\n") });
    }
    return events;
  }
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
}

function first(v: unknown): unknown {
  return Array.isArray(v) ? v[0] : undefined;
}

function parse(data: string): Json | undefined {
  if (data === "[DONE]") return undefined;
  try {
    return obj(JSON.parse(data));
  } catch {
    return undefined;
  }
}

/** The answer text one event adds ("" when it adds none). */
export function textOf(shape: Shape, ev: SseEvent): string {
  const j = parse(ev.data);
  if (!j) return "";
  switch (shape) {
    case "openai": {
      const content = obj(obj(first(j.choices))?.delta)?.content;
      return typeof content === "string" ? content : "";
    }
    case "anthropic": {
      if (j.type !== "content_block_delta") return "";
      const text = obj(j.delta)?.text;
      return typeof text === "string" ? text : "";
    }
    case "gemini": {
      const parts = obj(obj(first(j.candidates))?.content)?.parts;
      if (!Array.isArray(parts)) return "";
      return parts
        .map((p) => obj(p)?.text)
        .filter((s): s is string => typeof s === "string")
        .join("");
    }
  }
}

/** An error the stream reported in band (`event: error`, or an `error` object), if any. */
export function errorOf(ev: SseEvent): string | undefined {
  const j = parse(ev.data);
  const err = obj(j?.error);
  if (ev.event !== "error" && !err && j?.type !== "error") return undefined;
  const message = err?.message;
  return typeof message === "string" && message !== "" ? message : ev.data.slice(0, 500);
}
