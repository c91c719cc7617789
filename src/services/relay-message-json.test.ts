import { toJsonString } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RelayResponseSchema } from "../../gen/relayapi/v1/relay_service_pb.js";
import type { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { partJson } from "./relay-message-json.js";
import { type RelayPart, relayMessage } from "./relay-service.js";

/** Strings a header can hold once Node has parsed it, and some it cannot (the lane writes them all alike). */
const PIECES = [
  "",
  "a",
  "content-type",
  "application/json; charset=utf-8",
  'q"uote',
  "back\\slash",
  "tab\tx",
  "ctl\u0001\u001f",
  "é ü 漢字",
  "😀",
  "\u2028\u2029",
  "</script>",
];

function pick<T>(xs: readonly T[], n: number): T {
  return xs[n % xs.length]!;
}

/** A repeatable sequence; the high bits only (a power-of-two LCG's low bits repeat with a short period). */
function random(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed >>> 16;
  };
}

/** What protobuf-es writes for the part's message. */
function expected(part: RelayPart): string {
  return toJsonString(RelayResponseSchema, relayMessage(part));
}

describe("partJson", () => {
  it("writes exactly what protobuf-es writes for a head, repeated headers and key order included", () => {
    const next = random(7);
    const heads: RelayPart[] = [
      { case: "head", status: 0, headers: {} },
      { case: "head", status: 200, headers: {} },
      { case: "head", status: 0, headers: { x: "" } },
      { case: "head", status: 200, headers: { "set-cookie": [] } },
      { case: "head", status: 0, headers: { "set-cookie": ["a=1", "b=2"], "": "v" } },
    ];
    for (let i = 0; i < 500; i++) {
      const headers: Record<string, string | string[]> = {};
      for (let n = next() % 6; n > 0; n--) {
        const name = pick(PIECES, next());
        headers[name] = next() % 3 === 0 ? Array.from({ length: next() % 3 }, () => pick(PIECES, next())) : pick(PIECES, next());
      }
      heads.push({ case: "head", status: pick([0, 200, 204, 404, 429, 500, 599, 2147483647, -1], next()), headers });
    }
    for (const head of heads) expect(partJson(head)).toBe(expected(head));
  });

  it("writes exactly what protobuf-es writes for an end, and refuses a count that is no integer as it does", () => {
    const next = random(11);
    const counts = [0, 1, 52, 4096, 9007199254740991, 1e21, -1];
    const errors = ["", "upstream returned an error", 'q"uote\\', "é\u0001"];
    for (let i = 0; i < 500; i++) {
      const usage =
        next() % 4 === 0
          ? undefined
          : {
              promptTokens: pick(counts, next()),
              completionTokens: pick(counts, next()),
              totalTokens: pick(counts, next()),
              cachedTokens: pick(counts, next()),
            };
      const part: RelayPart = {
        case: "end",
        end: {
          outcome: (next() % 6) as Outcome, // 5: a number the enum does not name
          usage,
          callsLeft: next() % 2 === 0 ? null : pick(counts, next()),
          error: pick(errors, next()),
        },
      };
      expect(partJson(part)).toBe(expected(part));
    }
    const fractional: RelayPart = {
      case: "end",
      end: { outcome: 1 as Outcome, usage: { promptTokens: 1.5, completionTokens: 0, totalTokens: 1.5 }, callsLeft: null, error: "" },
    };
    expect(() => expected(fractional)).toThrow(RangeError);
    expect(() => partJson(fractional)).toThrow(RangeError);
  });

  it("writes chunks as protobuf-es does: bytes as base64, empty ones as an empty chunk, text through protobuf-es", () => {
    const parts: RelayPart[] = [
      { case: "chunk", data: new Uint8Array() },
      { case: "chunk", data: Buffer.from("data: {}\n\n") },
      { case: "chunk", data: Buffer.from([0, 255, 254, 1, 2]) },
      // A view into a larger buffer: only its own bytes.
      { case: "chunk", data: Buffer.from("xxhello worldxx").subarray(2, 13) },
      { case: "text", text: "héllo \u2028 😀" },
    ];
    for (const part of parts) expect(partJson(part)).toBe(expected(part));
  });
});
