import { create, toJsonString } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RelayResponseSchema } from "../../gen/relayapi/v1/relay_service_pb.js";
import { endJson, headJson } from "./relay-message-json.js";

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

describe("headJson", () => {
  it("writes exactly what protobuf-es's toJsonString writes for a head", () => {
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648);
    const heads = [
      { status: 0, headers: [] },
      { status: 200, headers: [] },
      { status: 0, headers: [{ name: "x", value: "" }] },
    ];
    for (let i = 0; i < 500; i++) {
      const headers = Array.from({ length: next() % 6 }, () => ({ name: pick(PIECES, next()), value: pick(PIECES, next()) }));
      heads.push({ status: pick([0, 200, 204, 404, 429, 500, 599, 2147483647, -1], next()), headers });
    }
    for (const head of heads) {
      const expected = toJsonString(RelayResponseSchema, create(RelayResponseSchema, { part: { case: "head", value: head } }));
      expect(headJson(head).toString("utf8")).toBe(expected);
    }
  });
});

describe("endJson", () => {
  it("writes exactly what protobuf-es's toJsonString writes for an end", () => {
    let seed = 11;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648);
    const big = [0n, 1n, 52n, 4096n, 9007199254740993n, 9223372036854775807n, -1n];
    const errors = ["", "upstream returned an error", 'q"uote\\', "é\u0001"];
    for (let i = 0; i < 500; i++) {
      const usage =
        next() % 4 === 0
          ? undefined
          : {
              promptTokens: pick(big, next()),
              completionTokens: pick(big, next()),
              totalTokens: pick(big, next()),
              cachedTokens: pick(big, next()),
              reasoningTokens: pick(big, next()),
              costMicroUsd: next() % 2 === 0 ? undefined : pick(big, next()),
            };
      const value = {
        outcome: next() % 6, // 5: a number the enum does not name
        usage,
        callsLeft: next() % 2 === 0 ? undefined : pick(big, next()),
        error: pick(errors, next()),
      };
      const message = create(RelayResponseSchema, { part: { case: "end", value } });
      const end = message.part.case === "end" ? message.part.value : undefined;
      expect(Buffer.from(endJson(end!)).toString("utf8")).toBe(toJsonString(RelayResponseSchema, message));
    }
  });
});
