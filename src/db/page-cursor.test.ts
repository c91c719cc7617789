// The one page-token format for every paged list: round trips, ids with dots, bad tokens a 400.
import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { decodePageToken, encodePageToken, integerField, pageOf, pageSizeOf, textField } from "./page-cursor.js";

const bad = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof RelayError ? `${e.code}: ${e.message}` : String(e);
  }
  return "no error";
};

describe("page tokens", () => {
  it("round-trip key fields, the last one keeping its dots", () => {
    const token = encodePageToken([1700000000000, "app.v2:jti.with.dots"]);
    expect(decodePageToken(token, 2)).toEqual(["1700000000000", "app.v2:jti.with.dots"]);
    expect(decodePageToken(encodePageToken([42]), 1)).toEqual(["42"]);
  });

  it("keeps the formats issued before the helper (tokens: `<ms>.<id>`, audit: `<id>`)", () => {
    expect(decodePageToken(Buffer.from("1700000000000.tok_abc").toString("base64url"), 2)).toEqual(["1700000000000", "tok_abc"]);
    expect(integerField(decodePageToken(Buffer.from("17").toString("base64url"), 1)[0]!, 1)).toBe(17);
  });

  it.each([
    ["empty", () => decodePageToken("", 1)],
    ["missing field", () => decodePageToken(encodePageToken(["123"]), 2)],
    ["empty first field", () => decodePageToken(Buffer.from(".tok").toString("base64url"), 2)],
    ["not a number", () => integerField("12a")],
    ["negative", () => integerField("-1")],
    ["below the minimum", () => integerField("0", 1)],
    ["too long", () => integerField("9".repeat(20))],
    ["id of another shape", () => textField("tok 1", /^[a-z_0-9]+$/)],
  ])("refuses %s as 400 invalid page_token", (_name, f) => {
    expect(bad(f)).toBe("bad_request: invalid page_token");
  });
});

describe("pages", () => {
  it("sizes: 0 means 50, at most 500", () => {
    expect([pageSizeOf(0), pageSizeOf(-3), pageSizeOf(7), pageSizeOf(10_000)]).toEqual([50, 50, 7, 500]);
  });

  it("cuts size + 1 rows to a page and names the next one; the last page has no token", () => {
    const rows = [{ id: 5 }, { id: 4 }, { id: 3 }];
    const first = pageOf(rows, 2, (r) => [r.id]);
    expect(first.rows).toEqual([{ id: 5 }, { id: 4 }]);
    expect(decodePageToken(first.nextPageToken, 1)).toEqual(["4"]);
    expect(pageOf(rows.slice(2), 2, (r) => [r.id])).toEqual({ rows: [{ id: 3 }], nextPageToken: "" });
  });
});
