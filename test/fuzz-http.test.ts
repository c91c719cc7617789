/**
 * Fuzz: what the HTTP layer parses from outside input besides the token: request paths
 * (traversal, encodings, unicode), query strings and headers (names, values, CRLF attempts), as
 * raw bytes over one reused HTTP/1.1 connection. The provider is a recording upstream with a
 * base path, so every forwarded request can be checked against the invariants of DESIGN 5 and
 * src/relay/upstream-url.ts: it stays below the base path, with no dot segment, no token, no
 * hop-by-hop or host header from the client, the query exactly the client's minus the token.
 */
import fc from "fast-check";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { createLogger } from "../src/log.js";
import { encodeAny, expectNoFragment, fragments, RawClient, reportCases, rssMb, type WireResponse } from "./support/fuzz.js";
import { useRelay } from "./support/use-relay.js";

const KEY = "sk-echo-CANARY-upstream-5e6f7a8b9c0d";
const RUNS = { paths: 1200, queries: 900, headers: 1100 };

interface Seen {
  url: string;
  rawHeaders: string[];
  headers: IncomingMessage["headers"];
}
let upstream: Server;
let upstreamHost: string;
const seen: Seen[] = [];
const { relay } = useRelay({ mock: false, log: createLogger("debug", (l) => logLines.push(l)) });
let client: RawClient;
const tokens: Record<string, string> = {};
let frags: string[];
const logLines: string[] = [];
let cases = 0;
let rssStart = 0;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    seen.push({ url: req.url ?? "", rawHeaders: req.rawHeaders, headers: req.headers });
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  upstreamHost = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  client = RawClient.for(relay.url);
  const base = `http://${upstreamHost}/base/v1`;
  await relay.admin.upsertProvider({ provider: { id: "echo-h", baseUrl: base, authStyle: AuthStyle.HEADER, authName: "x-echo-key", shape: ApiShape.OPENAI } });
  await relay.admin.upsertProvider({ provider: { id: "echo-q", baseUrl: base, authStyle: AuthStyle.QUERY, authName: "api_key", shape: ApiShape.OPENAI } });
  for (const p of ["echo-h", "echo-q"]) tokens[p] = (await relay.issue({ provider: p, upstreamKey: KEY })).secret;
  frags = fragments(KEY, ...Object.values(tokens));
  rssStart = rssMb();
});
afterAll(async () => {
  client?.close();
  await new Promise((r) => upstream?.close(r));
});

const DROPPED = [
  "host",
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "authorization",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  "cookie",
  "origin",
  "referer",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-real-ip",
  "expect",
  "dpop",
];

/** Sends one request; checks the answer and, when it was forwarded, what the upstream saw. */
async function probe(provider: "echo-h" | "echo-q", target: string, headers: Record<string, string>, check?: (s: Seen) => void): Promise<WireResponse> {
  cases++;
  const before = seen.length;
  const token = tokens[provider]!;
  const res = await client.request("POST", target, { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers }, "{}");
  const what = `${JSON.stringify(target.slice(0, 120))} ${JSON.stringify(headers).slice(0, 200)} -> ${res.status}`;
  expect(res.status, what).toBeLessThan(500);
  expectNoFragment(res.head + "\n" + res.body.toString("latin1"), frags, what);
  // A CR or LF in a value ends the header line on the wire: what follows is more headers, or a
  // second, pipelined request whose parse error Node answers at once, ahead of the first answer.
  const split = Object.values(headers).some((v) => /[\r\n]/.test(v));
  if (split) client.close();
  if (seen.length === before) {
    expect(res.status, what).toBeGreaterThanOrEqual(400);
    return res;
  }
  if (!split) expect(res.status, what).toBe(200);
  expect(seen.length, what).toBe(before + 1);
  const s = seen[before]!;
  const [path] = s.url.split("?");
  expect(path!.startsWith("/base/v1/"), what).toBe(true);
  expect(new URL(s.url, "http://x").pathname.startsWith("/base/v1/"), what).toBe(true);
  expect(path, what).not.toMatch(/\/\/|%2e|%2f|%5c|\\|#|@/i);
  for (const seg of path!.split("/")) expect([".", ".."], what).not.toContain(safeDecode(seg));
  expect(s.headers.host, what).toBe(upstreamHost);
  expect(
    s.rawHeaders.filter((_, i) => i % 2 === 0 && /^host$/i.test(s.rawHeaders[i]!)),
    what,
  ).toHaveLength(1);
  const all = s.url + "\n" + s.rawHeaders.join("\n");
  expect(all.includes(token) || all.includes(token.slice(4, 36)), `${what}: the relay token reached the upstream`).toBe(false);
  if (provider === "echo-h") expect(s.headers["x-echo-key"], what).toBe(KEY);
  else expect(new URLSearchParams(s.url.split("?")[1] ?? "").getAll("api_key"), what).toEqual([KEY]);
  check?.(s);
  return res;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const provider = fc.constantFrom("echo-h" as const, "echo-q" as const);
const tricky = fc.constantFrom(
  "..",
  ".",
  "%2e%2e",
  "%2E%2e",
  ".%2e",
  "%2e.",
  "%2e",
  "%2f",
  "%2F",
  "%5c",
  "%5C",
  "\\",
  "@",
  "@evil.example",
  "evil.example:80",
  "%40",
  "%00",
  "%0d%0a",
  "%",
  "%zz",
  "%%32%65",
  "%252e%252e",
  "..;",
  ";",
  "~",
  "*",
  "'",
  '"',
  "<",
  ">",
  "{",
  "}",
  "|",
  "^",
  "`",
  "#",
  "?",
  "#/../..",
  "\u2024\u2024",
  "\uff0e\uff0e",
  "\u002e\u0301",
  "\u3002",
  "\ufe52",
  "%c0%ae%c0%ae",
  "%e0%80%ae",
  "\u0000",
  "\t",
  " ",
  "\u00ff",
  "\u202e",
);
const segment = fc.oneof(fc.webSegment(), tricky, fc.string({ unit: "grapheme", maxLength: 6 }), fc.string({ unit: "binary-ascii", maxLength: 6 }));
const path = fc
  .tuple(fc.array(segment, { maxLength: 6 }), fc.array(fc.constantFrom("/", "/", "/", "//", "/./", "\\"), { minLength: 6, maxLength: 6 }))
  .map(([segs, seps]) => segs.map((s, i) => (i === 0 ? "" : seps[i]) + s).join(""));

// Generous: a property runs its cases one after another, and CI machines can be busy.
describe("fuzz: paths, query strings, headers", { timeout: 180_000 }, () => {
  it("paths: forwarded only below the provider's base path, never escaping it", async () => {
    const prefix = fc.constantFrom(
      "/api/echo-h/",
      "/api/echo-h/v1/",
      "/api/echo-h//",
      "/api/echo-h/./",
      "/api/echo-h%2f",
      "/api/Echo-h/",
      "/api//echo-h/",
      "/api/echo-h/v1/chat/",
    );
    await fc.assert(
      fc.asyncProperty(prefix, path, async (pre, p) => {
        const target = pre + p;
        const res = await probe("echo-h", target, {});
        if (res.status === 200) {
          // Forwarded: the upstream path is the client's path below /api/echo-h, percent-encoded at most.
          const sent = seen[seen.length - 1]!.url.split("?")[0]!;
          const asked = target.slice("/api/echo-h".length).split("?")[0]!;
          expect(safeDecode(sent), JSON.stringify(target)).toBe(safeDecode(new URL("http://x/base/v1" + asked).pathname));
        }
      }),
      { numRuns: RUNS.paths },
    );
  });

  it("query strings: kept exactly, minus the token parameters, whatever their spelling", async () => {
    const name = fc.oneof(
      fc.constantFrom(
        "key",
        "token",
        "KEY",
        "Token",
        "%6Bey",
        "k%65y",
        "to%6Ben",
        "key%00",
        "key ",
        "api_key",
        "model",
        "stream",
        "",
        "a",
        "%",
        "%zz",
        "&",
        "=",
      ),
      fc.webQueryParameters().map((s) => s.slice(0, 12)),
      fc.string({ maxLength: 8 }),
    );
    const value = fc.oneof(
      fc.string({ maxLength: 16 }),
      fc.string({ unit: "grapheme", maxLength: 8 }),
      fc.constantFrom("TOKEN", "%", "#x", "a+b", "%2B", "%26key%3D1", "\u00e9"),
    );
    const pair = fc.tuple(name, value, fc.boolean()).map(([n, v, encode]) => {
      // The token goes only where it is a carrier (`key`, `token`, however spelled): elsewhere it
      // is the client's own data, which the relay forwards like any other.
      const carrier = ["key", "token"].includes(safeDecode(n));
      const val = v === "TOKEN" && carrier ? "\u0000TOKEN" : v;
      return encode ? `${n}=${encodeAny(val)}` : `${n}=${val}`;
    });
    await fc.assert(
      fc.asyncProperty(provider, fc.array(pair, { maxLength: 6 }), fc.constantFrom("&", "&&", ";"), async (p, pairs, sep) => {
        // `;` separates nothing (URLSearchParams, WHATWG): a token after one is not in a carrier.
        const query = pairs.join(sep).replaceAll("\u0000TOKEN", sep === ";" ? "TOKEN" : encodeURIComponent(tokens[p]!));
        const target = `/api/${p}/v1/chat/completions?${query}`;
        await probe(p, target, {}, (s) => {
          // Whitespace and controls cannot travel raw in a request target: Node's reading of such a line is its own.
          if (/[\s\0-\x1f\x7f]/.test(query)) return;
          const expected = [...new URLSearchParams("?" + query)].filter(([k]) => k !== "key" && k !== "token");
          const got = [...new URLSearchParams(s.url.split("?")[1] ?? "")];
          // The relay's own credential parameter replaces any the client sent (echo-q).
          const mine = p === "echo-q" ? got.filter(([k]) => k !== "api_key") : got;
          const theirs = p === "echo-q" ? expected.filter(([k]) => k !== "api_key") : expected;
          expect(mine, JSON.stringify(target)).toEqual(theirs);
        });
      }),
      { numRuns: RUNS.queries },
    );
  });

  it("headers: names and values, CRLF and NUL attempts, hop-by-hop lists, repeated carriers", async () => {
    const tokenChars = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-";
    const randomName = fc.string({ unit: fc.constantFrom(...tokenChars), minLength: 1, maxLength: 16 });
    const knownName = fc
      .constantFrom(...DROPPED, "sec-fetch-mode", "x-relay-debug", "x-echo-key", "content-type", "x-forwarded-proto", "accept-encoding", "x-ok")
      .chain((n) => fc.constantFrom(n, n.toUpperCase(), n[0]!.toUpperCase() + n.slice(1)));
    const injection = fc.constantFrom(
      "\r\nHost: evil.example",
      "\r\nX-Injected: 1",
      "\nX-Injected: 1",
      "\r",
      "\0",
      "\r\n folded",
      "\u0085",
      "\u2028",
      "\r\n\r\nGET / HTTP/1.1",
      "\x7f",
      "\x01",
    );
    const value = fc.oneof(
      fc.string({ unit: "binary-ascii", maxLength: 24 }),
      fc.string({ unit: "grapheme", maxLength: 8 }),
      fc.tuple(fc.string({ maxLength: 8 }), injection, fc.string({ maxLength: 8 })).map(([a, b, c]) => a + b + c),
      fc.constantFrom("evil.example", "close", "close, x-ok", "keep-alive, x-echo-key", "chunked", "100-continue", "Bearer rai_x", "TOKEN"),
    );
    const header = fc.tuple(fc.oneof(randomName, knownName, knownName), value);
    await fc.assert(
      fc.asyncProperty(provider, fc.uniqueArray(header, { maxLength: 6, selector: ([n]) => n.toLowerCase() }), async (p, list) => {
        const headers: Record<string, string> = {};
        for (const [n, v] of list) {
          if (/^(content-length|transfer-encoding|expect)$/i.test(n) && !/^(chunked|100-continue)$/.test(v)) continue; // framing is not what is tested here
          // The token only in carriers: anywhere else it is the client's own data (an Origin is
          // reflected by CORS, say), not something the relay holds back.
          headers[n] = /^(authorization|x-api-key|api-key|x-goog-api-key)$/i.test(n) ? v.replaceAll("TOKEN", tokens[p]!) : v;
        }
        // The connection itself stays keep-alive unless a header closes it; either is fine.
        await probe(p, `/api/${p}/v1/chat/completions`, headers, (s) => {
          const listed = (headers[Object.keys(headers).find((h) => h.toLowerCase() === "connection") ?? ""] ?? "")
            .split(",")
            .map((h) => h.trim().toLowerCase());
          for (const name of Object.keys(s.headers)) {
            if (name === "host" || name === "content-length" || (name === "x-echo-key" && p === "echo-h")) continue;
            if (name === "connection" && s.headers.connection === "keep-alive") continue; // the relay's own client sets it
            expect(
              DROPPED.includes(name) || name.startsWith("sec-") || name.startsWith("x-relay-") || listed.includes(name),
              `${name} reached the upstream`,
            ).toBe(false);
          }
          expect(s.headers["accept-encoding"]).toBe("identity");
        });
      }),
      { numRuns: RUNS.headers },
    );
  });

  it("afterwards: the relay answers, memory is bounded, no internal error was logged", async () => {
    expect((await client.request("GET", "/healthz")).status).toBe(200);
    console.log(`fuzz-http: rss ${rssStart} MB -> ${rssMb()} MB`);
    expect(rssMb() - rssStart).toBeLessThan(256);
    expect(logLines.filter((l) => l.includes('"level":"error"'))).toEqual([]);
    expectNoFragment(logLines.join("\n"), frags, "the relay's log");
    reportCases("fuzz", "fuzz-http", cases);
    expect(cases).toBeGreaterThanOrEqual(Object.values(RUNS).reduce((a, b) => a + b, 0));
  });
});
