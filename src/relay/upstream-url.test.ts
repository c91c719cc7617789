import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import type { ProviderSpec } from "../providers/types.js";
import { safePath, upstreamTarget, upstreamUrl } from "./upstream-url.js";

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

describe("upstreamTarget", () => {
  const spec = (baseUrl: string, over: Partial<ProviderSpec> = {}): ProviderSpec =>
    ({ baseUrl, credential: { kind: "header", name: "authorization" }, ...over }) as unknown as ProviderSpec;
  const parsed = (p: ProviderSpec, path: string, query?: URLSearchParams): { origin: string; path: string } => {
    const u = upstreamUrl(p, path, query, "REAL");
    return { origin: u.origin, path: u.pathname + u.search };
  };

  it("joins without a parse exactly what the parsed way gives, for every base and path", () => {
    const bases = [
      "http://127.0.0.1:9",
      "http://127.0.0.1:9/",
      "https://api.example.com/v1beta/openai",
      "https://api.example.com/v1/",
      "HTTPS://API.Example.com:443/x",
      "https://api.example.com/a/../b",
      "https://api.example.com/a%20b",
      "https://user@api.example.com/x",
    ];
    const paths = [
      "/v1/chat/completions",
      "/",
      "v1/models",
      "/v1/models/gemini-2.0:generateContent",
      "/v1/files/file-abc~1",
      "/v1/ch%61t",
      "/a b",
      "/v1/x;y=1",
    ];
    for (const base of bases) {
      for (const path of paths) {
        const p = spec(base);
        expect(upstreamTarget(p, path, undefined, "REAL"), `${base} + ${path}`).toEqual(parsed(p, path));
        expect(upstreamTarget(p, path, new URLSearchParams("alt=sse&key=relay"), "REAL")).toEqual(parsed(p, path, new URLSearchParams("alt=sse&key=relay")));
      }
    }
  });

  it("keeps a key in the query and a provider's default query", () => {
    const keyed = spec("https://g.example.com", { credential: { kind: "query", name: "key" } } as Partial<ProviderSpec>);
    expect(upstreamTarget(keyed, "/v1/x", undefined, "REAL")).toEqual({ origin: "https://g.example.com", path: "/v1/x?key=REAL" });
    const versioned = spec("https://a.example.com/openai", { defaultQuery: { "api-version": "2024-10-21" } });
    expect(upstreamTarget(versioned, "/chat", undefined, "REAL")).toEqual({ origin: "https://a.example.com", path: "/openai/chat?api-version=2024-10-21" });
  });

  it("refuses what safePath refuses, on the joined way too", () => {
    expect(() => upstreamTarget(spec("http://127.0.0.1:9"), "/v1/../admin", undefined, "REAL")).toThrow(RelayError);
    expect(() => upstreamTarget(spec("http://127.0.0.1:9"), "//evil.example.com/x", undefined, "REAL")).toThrow(RelayError);
  });
});
