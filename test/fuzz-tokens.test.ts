/**
 * Fuzz: token carriers and token formats (DESIGN 4, 3.1, 3.2). Random and mutated `rai_` tokens,
 * random JWE-shaped strings and mutated valid sealed tokens (issuer `dir` and ECDH-ES), in every
 * carrier, over raw HTTP/1.1 on one reused connection, and as the bearer of IntrospectToken.
 * Every answer: the fixed 401 (or the Node parser's own 400 for bytes HTTP forbids), never a 5xx,
 * never a byte of a secret or a decrypted claim; nothing reaches the provider; the relay still
 * answers /healthz and its memory stays bounded.
 */
import fc from "fast-check";
import { EncryptJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INVALID_TOKEN } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { sealToken, sealTokenForRelay } from "../src/sdk/index.js";
import { newIssuedSecret } from "../src/tokens/issued-token.js";
import { encodeAny, expectNoFragment, fragments, RawClient, reportCases, rssMb, type WireResponse } from "./support/fuzz.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { createIssuer, seconds, type TestIssuer } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

const SEALED_KEY = "sk-sealed-CANARY-key-7f3a9c2e51d04b8a";
const BYOK_KEY = "sk-byok-CANARY-key-0c9d8e7f6a5b4c3d";
const SUBJECT = "subject-CANARY-decrypted-claim-91ab";
const MODEL = "model-CANARY-claim-x7";
const RUNS = { carriers: 900, issued: 600, jwe: 500, sealed: 700, introspect: 400 };

const { relay, mock } = useRelay({ mock: { chunks: 1 }, config: { acceptByokTokens: true }, log: createLogger("debug", (l) => logLines.push(l)) });
let client: RawClient;
let issuer: TestIssuer;
let issued: string;
let sealed: string;
let byok: string;
let frags: string[];
let secretFrags: string[];
const logLines: string[] = [];
let cases = 0;
let rssStart = 0;

beforeAll(async () => {
  client = RawClient.for(relay.url);
  issuer = await createIssuer(relay, "fuzz-app");
  issued = (await relay.issue()).secret;
  const claims = { prv: "openai", sub: SUBJECT, mdl: [MODEL, "gpt-mock"], exp: seconds(3600) };
  sealed = await sealToken({ ...claims, key: SEALED_KEY, jti: "fuzz-jti-CANARY-3c1e" }, issuer.issuerKey);
  byok = await sealTokenForRelay({ ...claims, key: BYOK_KEY, jti: "fuzz-byok-CANARY-88d2" }, JSON.parse((await relay.tokens.getSealingKey({})).jwk));
  secretFrags = fragments(issued, sealed, byok, issuer.secret, UPSTREAM_KEY, SEALED_KEY, BYOK_KEY);
  // Answers to bad tokens also never show a decrypted claim (ids, with the jti, are public: logs may name them).
  frags = [...secretFrags, ...fragments(SUBJECT, MODEL, "fuzz-jti-CANARY-3c1e", "fuzz-byok-CANARY-88d2")];
  rssStart = rssMb();
});
afterAll(async () => {
  client?.close();
});

const CHAT = "/api/openai/v1/chat/completions";
const BODY = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
const VALID = () => new Set([issued, sealed, byok]);

type Carrier = "bearer" | "bearer-lower" | "x-api-key" | "api-key" | "x-goog-api-key" | "query-key" | "query-token" | "query-raw";
const CARRIERS: Carrier[] = ["bearer", "bearer-lower", "x-api-key", "api-key", "x-goog-api-key", "query-key", "query-token", "query-raw"];

function carry(carrier: Carrier, token: string): { target: string; headers: Record<string, string> } {
  switch (carrier) {
    case "bearer":
      return { target: CHAT, headers: { authorization: `Bearer ${token}` } };
    case "bearer-lower":
      return { target: CHAT, headers: { authorization: `bearer ${token}` } };
    case "query-key":
      return { target: `${CHAT}?key=${encodeAny(token)}`, headers: {} };
    case "query-token":
      return { target: `${CHAT}?a=1&token=${encodeAny(token)}`, headers: {} };
    case "query-raw":
      return { target: `${CHAT}?key=${token}`, headers: {} };
    default:
      return { target: CHAT, headers: { [carrier]: token } };
  }
}

/**
 * The token as the relay receives it. A header's value has no whitespace at its ends (RFC 9110
 * 5.5, and src/http/token-carrier.ts trims it; `Bearer` takes one or more spaces), so a token
 * wrapped in whitespace in a header is the same token. A raw query is read as the relay reads
 * any query: the request target ends at whitespace on the wire, then URLSearchParams (`tok&`
 * and `tok%2E` are `tok` and `tok.`). An encoded query keeps every character.
 */
function delivered(carrier: Carrier, token: string): string {
  if (carrier === "query-raw") return new URLSearchParams(`key=${token.split(/[ \t]/)[0]}`).get("key") ?? "";
  return carrier.startsWith("query-") ? token : token.trim();
}

/** Edits applied to a token, positions taken modulo its length. */
const char = fc.oneof(fc.constantFrom(..."ABCxyz019-_.=+/~ %\t\"'\\:;,@#?&"), fc.string({ unit: "binary", minLength: 1, maxLength: 1 }));
const edit = fc.oneof(
  fc.record({ op: fc.constant("replace" as const), at: fc.nat(), ch: char }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), ch: char }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("case" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("repeat" as const), n: fc.integer({ min: 2, max: 3 }) }),
  fc.record({ op: fc.constant("wrap" as const), pre: fc.string({ maxLength: 4 }), post: fc.string({ maxLength: 4 }) }),
);
type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;

function mutate(token: string, edits: Edit[]): string {
  let s = token;
  for (const e of edits) {
    const at = "at" in e ? e.at % (s.length + 1) : 0;
    if (e.op === "replace") s = s.slice(0, at) + e.ch + s.slice(at + 1);
    else if (e.op === "insert") s = s.slice(0, at) + e.ch + s.slice(at);
    else if (e.op === "delete") s = s.slice(0, at) + s.slice(at + e.n);
    else if (e.op === "truncate") s = s.slice(0, at);
    else if (e.op === "case") s = s.slice(0, at) + (s[at] === s[at]?.toUpperCase() ? s[at]?.toLowerCase() : s[at]?.toUpperCase()) + s.slice(at + 1);
    else if (e.op === "repeat") s = s.repeat(e.n);
    else s = e.pre + s + e.post;
  }
  return s;
}

/** Sends one token in one carrier and checks the answer; returns it. */
async function probe(carrier: Carrier, token: string): Promise<WireResponse> {
  cases++;
  const before = mock.requests.length;
  const { target, headers } = carry(carrier, token);
  const res = await client.request("POST", target, { ...headers, "content-type": "application/json" }, BODY);
  const what = `${carrier} ${JSON.stringify(token.slice(0, 80))} -> ${res.status}`;
  expect(res.status, what).toBeLessThan(500);
  expectNoFragment(res.head + "\n" + res.body.toString("latin1"), frags, what);
  // A valid token may still be refused if the carrier mangled it (query-raw with `+`): never
  // accepted unless what the relay received (delivered) is a valid token.
  if (res.status === 200) {
    expect(VALID().has(token.trim()) || VALID().has(delivered(carrier, token)), what).toBe(true);
    return res;
  }
  expect(mock.requests.length, what).toBe(before);
  if (res.status === 401) {
    expect(JSON.parse(res.body.toString()), what).toEqual({
      error: { message: INVALID_TOKEN, type: "invalid_request_error", param: null, code: "unauthenticated" },
    });
  } else {
    // Only HTTP's own refusal of bytes it forbids in a header or request target.
    expect(res.status, what).toBe(400);
  }
  return res;
}

const carrierArb = fc.constantFrom(...CARRIERS);
const b64url = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), minLength: min, maxLength: max });
const b64json = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
function parseHeader(segment: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(Buffer.from(segment, "base64url").toString());
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

// Generous: a property runs its cases one after another, and CI machines can be busy.
describe("fuzz: token carriers and formats", { timeout: 180_000 }, () => {
  it("random strings in every carrier", async () => {
    const token = fc.oneof(
      fc.string({ maxLength: 64 }),
      fc.string({ unit: "binary", maxLength: 64 }),
      fc.string({ unit: "grapheme", maxLength: 32 }),
      fc.constantFrom("", " ", "rai_", "Bearer", "null", "undefined", "[object Object]", "rai_" + "A".repeat(5000), "e".repeat(4097), "a.b.c.d.e", "...."),
      fc.string({ maxLength: 40 }).map((s) => "rai_" + s),
    );
    await fc.assert(
      fc.asyncProperty(carrierArb, token, async (c, t) => void (await probe(c, t))),
      { numRuns: RUNS.carriers },
    );
  });

  it("mutated rai_ tokens: the real one and unknown well-formed ones", async () => {
    const base = fc.oneof(
      fc.constant(issued),
      fc.constant(issued),
      fc.constant(null).map(() => newIssuedSecret()),
    );
    await fc.assert(
      fc.asyncProperty(carrierArb, base, fc.array(edit, { minLength: 0, maxLength: 3 }), async (c, t, edits) => {
        const token = mutate(t, edits);
        // A token can be mutated into itself (a replace with the same character): then it must work.
        if (token === issued && (c === "bearer" || c === "bearer-lower" || c === "x-api-key")) expect((await probe(c, token)).status).toBe(200);
        else await probe(c, token);
      }),
      { numRuns: RUNS.issued },
    );
  });

  it("random JWE-shaped strings, some with a plausible protected header", async () => {
    const header = fc.oneof(
      b64url(1, 120),
      fc
        .record({
          alg: fc.constantFrom("dir", "ECDH-ES", "none", "RSA-OAEP", "A256KW", ""),
          enc: fc.constantFrom("A256GCM", "A128GCM", "A256CBC-HS512", ""),
          kid: fc.oneof(fc.constant(issuer?.kid ?? "kid"), fc.string({ maxLength: 20 })),
          epk: fc.option(fc.record({ kty: fc.constant("OKP"), crv: fc.constant("X25519"), x: b64url(0, 50) }), { nil: undefined }),
          zip: fc.option(fc.constant("DEF"), { nil: undefined }),
        })
        .map(b64json),
    );
    const jwe = fc.tuple(header, b64url(0, 60), b64url(0, 22), b64url(0, 400), b64url(0, 30)).map((p) => p.join("."));
    await fc.assert(
      fc.asyncProperty(carrierArb, jwe, async (c, t) => void (await probe(c, t))),
      { numRuns: RUNS.jwe },
    );
  });

  it("mutated valid sealed tokens (dir and ECDH-ES): characters, segments, headers", async () => {
    const segmentEdit = fc.oneof(
      fc.record({ op: fc.constant("swap" as const), i: fc.nat(4), j: fc.nat(4) }),
      fc.record({ op: fc.constant("drop" as const), i: fc.nat(4) }),
      fc.record({ op: fc.constant("empty" as const), i: fc.nat(4) }),
      fc.record({
        op: fc.constant("header" as const),
        patch: fc.dictionary(fc.constantFrom("alg", "enc", "kid", "zip", "crit", "cty"), fc.jsonValue({ maxDepth: 1 })),
      }),
      fc.record({ op: fc.constant("pad" as const), i: fc.nat(4) }),
    );
    await fc.assert(
      fc.asyncProperty(
        carrierArb,
        fc.constantFrom("sealed", "byok"),
        fc.array(edit, { maxLength: 2 }),
        fc.array(segmentEdit, { maxLength: 2 }),
        async (c, kind, edits, segEdits) => {
          const valid = kind === "sealed" ? sealed : byok;
          let parts = valid.split(".");
          for (const e of segEdits) {
            if (e.op === "swap") [parts[e.i], parts[e.j]] = [parts[e.j]!, parts[e.i]!];
            else if (e.op === "drop") parts = parts.filter((_, k) => k !== e.i);
            else if (e.op === "empty") parts[e.i] = "";
            else if (e.op === "pad") parts[e.i] = (parts[e.i] ?? "") + "=";
            else parts[0] = b64json({ ...parseHeader(parts[0] ?? ""), ...e.patch });
          }
          const token = mutate(parts.join("."), edits);
          const res = await probe(c, token);
          if (delivered(c, token) !== valid) expect(res.status).not.toBe(200);
        },
      ),
      { numRuns: RUNS.sealed },
    );
  });

  it("IntrospectToken with mutated bearers: unauthenticated, nothing echoed", async () => {
    const base = fc.constantFrom(issued, sealed, byok);
    await fc.assert(
      fc.asyncProperty(base, fc.array(edit, { minLength: 1, maxLength: 3 }), fc.constantFrom("application/json", "application/proto"), async (t, edits, ct) => {
        cases++;
        const token = mutate(t, edits);
        const res = await client.request(
          "POST",
          "/relayapi.v1.TokenService/IntrospectToken",
          { authorization: `Bearer ${token}`, "content-type": ct },
          ct === "application/json" ? "{}" : "",
        );
        const what = `introspect ${JSON.stringify(token.slice(0, 80))} -> ${res.status}`;
        expect(res.status, what).toBeLessThan(500);
        if (VALID().has(token.trim())) return;
        expect([400, 401], what).toContain(res.status);
        expectNoFragment(res.head + "\n" + res.body.toString("latin1"), frags, what);
      }),
      { numRuns: RUNS.introspect },
    );
  });

  it("regression: a sealed `sub` with a NUL is the fixed 401 (it was a 503 at first use: PostgreSQL refused the row)", async () => {
    const token = await new EncryptJWT({ prv: "openai", key: SEALED_KEY, sub: "a\u0000b", jti: "nul-sub", exp: seconds(600) })
      .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: issuer.kid })
      .encrypt(Buffer.from(issuer.secret, "base64url"));
    const res = await probe("bearer", token);
    expect(res.status).toBe(401);
  });

  it("afterwards: the relay answers, the valid tokens still work, memory is bounded, no internal error was logged", async () => {
    expect((await client.request("GET", "/healthz")).status).toBe(200);
    for (const t of [issued, sealed, byok]) expect((await probe("bearer", t)).status).toBe(200);
    const grown = rssMb() - rssStart;
    console.log(`fuzz-tokens: rss ${rssStart} MB -> ${rssMb()} MB`);
    expect(grown).toBeLessThan(256);
    expect(logLines.filter((l) => l.includes('"level":"error"'))).toEqual([]);
    expectNoFragment(logLines.join("\n"), secretFrags, "the relay's log");
    reportCases("fuzz", "fuzz-tokens", cases);
    expect(cases).toBeGreaterThanOrEqual(Object.values(RUNS).reduce((a, b) => a + b, 0));
  });
});
