import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import type { ProviderSpec } from "../providers/types.js";
import { safePath, upstreamUrl } from "./upstream-url.js";

describe("safePath", () => {
  it.each([
    ["", "/"],
    ["/", "/"],
    ["v1/models", "/v1/models"],
    ["/v1/chat/completions", "/v1/chat/completions"],
    ["/v1beta/models/gemini-pro:generateContent", "/v1beta/models/gemini-pro:generateContent"],
    ["/v1/ch%61t/completions", "/v1/chat/completions"],
    ["/v1beta/models/gemini%2Dpro:generateContent", "/v1beta/models/gemini-pro:generateContent"],
    ["/v1/a%3ab", "/v1/a%3ab"],
    ["/v1/a b", "/v1/a%20b"],
    ["/v1/é", "/v1/%C3%A9"],
    ["/v1/%c3%a9", "/v1/%c3%a9"],
    ["/v1/{x}", "/v1/%7Bx%7D"],
    ["/v1/a%20b", "/v1/a%20b"],
    ["/v1/a%25b", "/v1/a%25b"],
  ])("%j -> %j", (raw, normal) => {
    expect(safePath(raw)).toBe(normal);
    expect(safePath(normal)).toBe(normal); // idempotent
  });

  it.each([
    "/v1/chat/completions?echo=",
    "/v1/chat/completions#frag",
    "/v1/models/gemini-ultra?/models/gemini-pro:generateContent",
    "?key=x",
    "/v1//chat",
    "//evil.example/x",
    "/v1/../x",
    "/v1/./x",
    "..",
    "/v1/%2e%2E/x",
    "/v1/%2fx",
    "/v1/%5cx",
    "/v1\\x",
    "/v1/a\tb",
    "/v1/a\r\nHost: x",
    "@evil/x",
    "/v1/%zz",
    "/v1/%4",
    "/v1/100%",
  ])("%j is refused (400)", (raw) => {
    expect(() => safePath(raw)).toThrow(RelayError);
    try {
      safePath(raw);
    } catch (e) {
      expect((e as RelayError).status).toBe(400);
    }
  });
});

describe("upstreamUrl", () => {
  const provider = {
    baseUrl: "http://127.0.0.1:9/base",
    defaultQuery: {},
    credential: { kind: "query", name: "key" },
  } as unknown as ProviderSpec;

  it("puts the key in its own parameter, after the client's", () => {
    const url = upstreamUrl(provider, "/v1/x", new URLSearchParams("echo=1&key=chosen&token=t"), "REAL");
    expect(url.pathname).toBe("/base/v1/x");
    expect([...url.searchParams]).toEqual([
      ["echo", "1"],
      ["key", "REAL"],
    ]);
  });

  it("refuses a query in the path", () => {
    expect(() => upstreamUrl(provider, "/v1/x?echo=", undefined, "REAL")).toThrow(RelayError);
  });
});
