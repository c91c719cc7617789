/**
 * Issue 17, finding 3: body rules hold for bodies in disguise (DESIGN 3.4). A body that starts
 * with a UTF-8 byte-order mark, or comes gzip/deflate/br-encoded, or under a text/plain or
 * multipart content type, is read by the policy like any JSON body: tools refused, caps checked
 * and spliced, and the provider gets the decoded bytes without `content-encoding`. A body the
 * policy cannot read (an unknown encoding, UTF-16/32 JSON) is refused, and a compression bomb is
 * refused with 413 before it is inflated past the body limit. Through the real `openai` SDK
 * (its `fetch` hook puts the disguise on), raw fetch, and RelayService (headers in a list);
 * `mock.requests` judges what reached the provider.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import OpenAI from "openai";
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { startRelay } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const MAX_BODY = 256 * 1024;
const CAP = 100;

const { relay, mock } = useRelay({ mock: { chunks: 2 }, config: { maxBodyBytes: MAX_BODY } });
/** A token with every body rule: output cap, `n` cap, no tools. */
let ruled: string;
beforeAll(async () => {
  ruled = (await relay.issue({ limits: { maxOutputTokens: CAP, maxN: 1, toolsAllowed: false } })).secret;
});
beforeEach(() => mock.reset());

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const messages = [{ role: "user", content: "hi" }];
const BENIGN = { model: "gpt-mock", messages };
const TOOL = { type: "function", function: { name: "f", parameters: { type: "object" } } };
/** Each alone breaks a rule of the token. */
const EVIL: [string, Record<string, unknown>][] = [
  ["max_tokens 99999", { ...BENIGN, max_tokens: 99999 }],
  ["n 5", { ...BENIGN, n: 5 }],
  ["tools", { ...BENIGN, tools: [TOOL] }],
];

interface Disguise {
  name: string;
  encode: (json: Buffer) => Buffer;
  headers: Record<string, string>;
}
const JSON_TYPE = { "content-type": "application/json" };
const DISGUISES: Disguise[] = [
  { name: "UTF-8 BOM", encode: (b) => Buffer.concat([BOM, b]), headers: JSON_TYPE },
  { name: "gzip", encode: (b) => gzipSync(b), headers: { ...JSON_TYPE, "content-encoding": "gzip" } },
  { name: "x-gzip", encode: (b) => gzipSync(b), headers: { ...JSON_TYPE, "content-encoding": "x-gzip" } },
  { name: "deflate (zlib)", encode: (b) => deflateSync(b), headers: { ...JSON_TYPE, "content-encoding": "deflate" } },
  { name: "deflate (raw)", encode: (b) => deflateRawSync(b), headers: { ...JSON_TYPE, "content-encoding": "deflate" } },
  { name: "br", encode: (b) => brotliCompressSync(b), headers: { ...JSON_TYPE, "content-encoding": "br" } },
  { name: "BOM under gzip", encode: (b) => gzipSync(Buffer.concat([BOM, b])), headers: { ...JSON_TYPE, "content-encoding": "GZIP" } },
  { name: "text/plain", encode: (b) => b, headers: { "content-type": "text/plain" } },
  { name: "multipart content type", encode: (b) => b, headers: { "content-type": "multipart/form-data; boundary=x" } },
  { name: "octet-stream + br", encode: (b) => brotliCompressSync(b), headers: { "content-type": "application/octet-stream", "content-encoding": "br" } },
];

const CHAT = () => `${relay.url}/api/openai/v1/chat/completions`;
const post = (body: Buffer, headers: Record<string, string>, token = ruled) =>
  fetch(CHAT(), { method: "POST", headers: { authorization: `Bearer ${token}`, ...headers }, body: new Uint8Array(body) });
const jsonBytes = (o: unknown) => Buffer.from(JSON.stringify(o));

/** What the provider was sent: one request, decoded JSON, no encoding header, no BOM. */
function expectReadable() {
  expect(mock.requests).toHaveLength(1);
  const rec = mock.requests[0]!;
  expect(rec.headers["content-encoding"]).toBeUndefined();
  expect(rec.body.subarray(0, 3).equals(BOM)).toBe(false);
  expect(Number(rec.headers["content-length"])).toBe(rec.body.length);
  return JSON.parse(rec.body.toString("utf8")) as Record<string, unknown>;
}

describe("raw fetch: every disguise is read by the policy", () => {
  it.each(DISGUISES)("$name: a benign body reaches the provider decoded, with the cap spliced in", async (d) => {
    const res = await post(d.encode(jsonBytes(BENIGN)), d.headers);
    expect(res.status).toBe(200);
    const sent = expectReadable();
    expect(sent).toMatchObject({ ...BENIGN, max_completion_tokens: CAP });
    expect(sent.tools).toBeUndefined();
  });

  for (const [rule, body] of EVIL) {
    it.each(DISGUISES)(`$name: ${rule} is refused (403), nothing reaches the provider`, async (d) => {
      const res = await post(d.encode(jsonBytes(body)), d.headers);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/not allowed|above this token's cap/);
      expect(mock.requests).toHaveLength(0);
    });
  }
});

describe("openai SDK with a fetch that disguises the body", () => {
  const sdk = (d: Disguise) =>
    new OpenAI({
      apiKey: ruled,
      baseURL: `${relay.url}/api/openai/v1`,
      maxRetries: 0,
      fetch: (url, init) => {
        const headers = new Headers(init?.headers);
        for (const [k, v] of Object.entries(d.headers)) headers.set(k, v);
        return fetch(url, { ...init, headers, body: new Uint8Array(d.encode(Buffer.from(String(init?.body)))) });
      },
    });

  it.each(DISGUISES)("$name: the SDK's call succeeds with the cap in force", async (d) => {
    const res = await sdk(d).chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
    expect(res.choices[0]?.message.content).toBe("tok0 tok1 ");
    expect(expectReadable()).toMatchObject({ max_completion_tokens: CAP });
  });

  it.each(DISGUISES)("$name: tools, max_tokens 99999 and n 5 are refused", async (d) => {
    const err = await sdk(d)
      .chat.completions.create({
        model: "gpt-mock",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 99999,
        n: 5,
        tools: [TOOL as OpenAI.ChatCompletionTool],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(403);
    expect(mock.requests).toHaveLength(0);
  });
});

describe("bodies the policy cannot read are refused", () => {
  const utf16be = (b: Buffer) => Buffer.from(b.toString("utf8"), "utf16le").swap16();
  const utf32le = (b: Buffer) => Buffer.concat([...b.toString("latin1")].map((c) => Buffer.from([c.charCodeAt(0), 0, 0, 0])));
  it.each([
    ["zstd (unknown to Node 20)", 415, gzipSync(jsonBytes(BENIGN)), { ...JSON_TYPE, "content-encoding": "zstd" }],
    ["compress", 415, gzipSync(jsonBytes(BENIGN)), { ...JSON_TYPE, "content-encoding": "compress" }],
    ["stacked gzip, br", 415, brotliCompressSync(gzipSync(jsonBytes(BENIGN))), { ...JSON_TYPE, "content-encoding": "gzip, br" }],
    ["gzip that is not gzip", 400, jsonBytes(BENIGN), { ...JSON_TYPE, "content-encoding": "gzip" }],
    ["UTF-16LE with BOM", 415, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(JSON.stringify(EVIL[2]![1]), "utf16le")]), JSON_TYPE],
    ["UTF-16LE without BOM", 415, Buffer.from(JSON.stringify(EVIL[2]![1]), "utf16le"), JSON_TYPE],
    ["UTF-16BE without BOM", 415, utf16be(jsonBytes(EVIL[2]![1])), { "content-type": "text/plain" }],
    ["UTF-32LE without BOM", 415, utf32le(jsonBytes(EVIL[2]![1])), JSON_TYPE],
    ["UTF-16LE under gzip", 415, gzipSync(Buffer.from(JSON.stringify(EVIL[2]![1]), "utf16le")), { ...JSON_TYPE, "content-encoding": "gzip" }],
    ["form feed before the object", 400, Buffer.concat([Buffer.from("\f"), jsonBytes(EVIL[2]![1])]), JSON_TYPE],
    ["two BOMs", 400, Buffer.concat([BOM, BOM, jsonBytes(EVIL[2]![1])]), JSON_TYPE],
    ["invalid UTF-8 in a key", 400, Buffer.from('{"model":"gpt-mock","messages":[],"to\xc1\xafls":[]}', "latin1"), JSON_TYPE],
  ] as const)("%s -> %i, nothing reaches the provider", async (_n, status, body, headers) => {
    const res = await post(body, headers);
    expect(res.status).toBe(status);
    const err = ((await res.json()) as { error: { message: string; code: string } }).error;
    expect(err.message).toMatch(/^request body/);
    expect(mock.requests).toHaveLength(0);
  });

  it("a gzip bomb is refused with 413 without being inflated past the limit", async () => {
    // 64 MiB of JSON in ~64 KB of gzip; the relay stops inflating at MAX_BODY.
    const bomb = gzipSync(Buffer.concat([Buffer.from('{"model":"gpt-mock","pad":"'), Buffer.alloc(64 * 1024 * 1024, 0x61), Buffer.from('"}')]), { level: 9 });
    expect(bomb.length).toBeLessThan(MAX_BODY);
    const before = process.memoryUsage().rss;
    const res = await post(bomb, { ...JSON_TYPE, "content-encoding": "gzip" });
    expect(res.status).toBe(413);
    expect(mock.requests).toHaveLength(0);
    expect(process.memoryUsage().rss - before).toBeLessThan(48 * 1024 * 1024);
  });

  it("a decoded body over the token's own byte limit is 413", async () => {
    const { secret } = await relay.issue({ limits: { maxBodyBytes: 200n, toolsAllowed: false } });
    const big = jsonBytes({ ...BENIGN, pad: "a".repeat(1000) });
    const res = await post(gzipSync(big), { ...JSON_TYPE, "content-encoding": "gzip" }, secret);
    expect(res.status).toBe(413);
    expect(mock.requests).toHaveLength(0);
  });
});

describe("bodies that are not JSON keep today's behaviour", () => {
  it("a multipart upload passes byte for byte", async () => {
    const body = Buffer.from('--x\r\ncontent-disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--x--\r\n');
    const res = await fetch(`${relay.url}/api/openai/v1/audio/transcriptions`, {
      method: "POST",
      headers: { authorization: `Bearer ${ruled}`, "content-type": "multipart/form-data; boundary=x" },
      body: new Uint8Array(body),
    });
    expect(res.status).toBe(404); // the mock has no such route; the call reached it
    expect(mock.requests[0]!.body.equals(body)).toBe(true);
  });

  it("binary audio that happens to start with NULs is not taken for UTF-32", async () => {
    const body = Buffer.from([0, 0, 0, 1, 0, 0xff, 0xfe, 0x7b, 0x00, 0x22]);
    const res = await fetch(`${relay.url}/api/openai/v1/audio/speech-in`, {
      method: "POST",
      headers: { authorization: `Bearer ${ruled}`, "content-type": "audio/wav" },
      body: new Uint8Array(body),
    });
    expect(res.status).toBe(404);
    expect(mock.requests[0]!.body.equals(body)).toBe(true);
  });

  it("a gzip-encoded upload is decoded before it is forwarded", async () => {
    const text = Buffer.from('--x\r\ncontent-disposition: form-data; name="file"\r\n\r\nhello\r\n--x--\r\n');
    const res = await fetch(`${relay.url}/api/openai/v1/files`, {
      method: "POST",
      headers: { authorization: `Bearer ${ruled}`, "content-type": "multipart/form-data; boundary=x", "content-encoding": "gzip" },
      body: new Uint8Array(gzipSync(text)),
    });
    // The mock stores the file it was sent (test/support/mock-provider.ts).
    expect(res.status).toBe(200);
    expect(mock.requests[0]!.body.equals(text)).toBe(true);
    expect(mock.requests[0]!.headers["content-encoding"]).toBeUndefined();
  });
});

describe("RelayService: the same decoding for a body and headers in a message", () => {
  const rpc = () => createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  async function call(body: Buffer, headers: [string, string][]): Promise<{ status?: number; code?: Code; message?: string }> {
    let status: number | undefined;
    try {
      const stream = rpc().relay(
        { provider: "openai", method: "POST", path: "/v1/chat/completions", headers: headers.map(([name, value]) => ({ name, value })), body },
        { headers: { authorization: `Bearer ${ruled}` }, timeoutMs: 5000 },
      );
      for await (const res of stream) if (res.part.case === "head") status = res.part.value.status;
      return { status };
    } catch (e) {
      const err = ConnectError.from(e);
      return { code: err.code, message: err.rawMessage };
    }
  }

  it.each(DISGUISES)("$name: a benign body reaches the provider decoded, with the cap spliced in", async (d) => {
    expect((await call(d.encode(jsonBytes(BENIGN)), Object.entries(d.headers))).status).toBe(200);
    expect(expectReadable()).toMatchObject({ ...BENIGN, max_completion_tokens: CAP });
  });

  it.each(DISGUISES)("$name: tools are refused", async (d) => {
    expect((await call(d.encode(jsonBytes(EVIL[2]![1])), Object.entries(d.headers))).code).toBe(Code.PermissionDenied);
    expect(mock.requests).toHaveLength(0);
  });

  it("content-encoding given twice is a stacked list (as on HTTP), refused", async () => {
    const r = await call(brotliCompressSync(gzipSync(jsonBytes(EVIL[2]![1]))), [
      ["content-encoding", "gzip"],
      ["Content-Encoding", "br"],
    ]);
    expect(r).toMatchObject({ code: Code.InvalidArgument, message: "request body: stacked content encodings are not supported" });
    expect(mock.requests).toHaveLength(0);
  });

  it("a bomb is refused before it is inflated past the limit", async () => {
    const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024, 0x20), { level: 9 });
    const r = await call(bomb, [["content-encoding", "gzip"]]);
    expect(r).toMatchObject({ code: Code.InvalidArgument, message: "request body too large once decoded" });
    expect(mock.requests).toHaveLength(0);
  });

  it("UTF-16 JSON is refused", async () => {
    expect((await call(Buffer.from(JSON.stringify(EVIL[2]![1]), "utf16le"), [])).code).toBe(Code.InvalidArgument);
    expect(mock.requests).toHaveLength(0);
  });
});

describe("decoded bytes count against the global body budget", () => {
  it("a small gzip body that decodes past the budget gets 503 with Retry-After; nothing reaches the provider", async () => {
    const tight = await startRelay({ mock, config: { maxBodyBytes: 4 * 1024 * 1024, bodyMemoryBytes: 1024 * 1024 } });
    try {
      const { secret } = await tight.issue();
      mock.reset();
      // ~1.5 MB of JSON compresses to a few KB: the raw body fits the 1 MB budget, its decoding does not.
      const big = jsonBytes({ ...BENIGN, messages: [{ role: "user", content: "a".repeat(1_500_000) }] });
      const res = await fetch(`${tight.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, ...JSON_TYPE, "content-encoding": "gzip" },
        body: new Uint8Array(gzipSync(big)),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/request bodies/);
      expect(mock.requests).toHaveLength(0);
      // A body that decodes within the budget still goes through.
      const small = await fetch(`${tight.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, ...JSON_TYPE, "content-encoding": "gzip" },
        body: new Uint8Array(gzipSync(jsonBytes(BENIGN))),
      });
      expect(small.status).toBe(200);
    } finally {
      await tight.close();
    }
  });
});
