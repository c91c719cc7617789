import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { bodyKind, decodeRequestBody, stripUtf8Bom } from "./request-body.js";

const JSON_BODY = Buffer.from('{"model":"m","messages":[]}');
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const LIMIT = 1024 * 1024;

async function refusal(p: unknown): Promise<{ code: string; status: number; message: string }> {
  const e = await Promise.resolve(p).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RelayError);
  const r = e as RelayError;
  return { code: r.code, status: r.status, message: r.message };
}

describe("decodeRequestBody", () => {
  it("leaves a plain body as it is (same buffer)", async () => {
    expect(await decodeRequestBody(JSON_BODY, {}, LIMIT)).toBe(JSON_BODY);
    expect(await decodeRequestBody(JSON_BODY, { "content-encoding": "identity" }, LIMIT)).toBe(JSON_BODY);
    expect(await decodeRequestBody(JSON_BODY, { "transfer-encoding": "chunked" }, LIMIT)).toBe(JSON_BODY);
  });

  it.each([
    ["gzip", gzipSync(JSON_BODY)],
    ["x-gzip", gzipSync(JSON_BODY)],
    [" GZip ", gzipSync(JSON_BODY)],
    ["gzip, identity", gzipSync(JSON_BODY)],
    ["deflate", deflateSync(JSON_BODY)],
    ["deflate", deflateRawSync(JSON_BODY)],
    ["br", brotliCompressSync(JSON_BODY)],
  ])("decodes %s", async (coding, encoded) => {
    expect((await decodeRequestBody(encoded, { "content-encoding": coding }, LIMIT)).equals(JSON_BODY)).toBe(true);
  });

  it("reads a repeated header (an HTTP/2 list) as one coding list", async () => {
    expect((await decodeRequestBody(gzipSync(JSON_BODY), { "content-encoding": ["gzip"] }, LIMIT)).equals(JSON_BODY)).toBe(true);
    expect((await refusal(decodeRequestBody(JSON_BODY, { "content-encoding": ["gzip", "br"] }, LIMIT))).status).toBe(415);
  });

  it.each([["zstd"], ["compress"], ["gzip, br"], ["br, gzip"], ["x-custom"], ["constructor"], ["__proto__"], ["toString"]])(
    "refuses %s with 415",
    async (coding) => {
      expect(await refusal(decodeRequestBody(gzipSync(JSON_BODY), { "content-encoding": coding }, LIMIT))).toMatchObject({
        status: 415,
        code: "unsupported_media_type",
      });
    },
  );

  it("refuses a transfer coding other than chunked with 415", async () => {
    expect((await refusal(decodeRequestBody(gzipSync(JSON_BODY), { "transfer-encoding": "gzip, chunked" }, LIMIT))).status).toBe(415);
  });

  it.each([
    ["gzip", JSON_BODY],
    ["gzip", gzipSync(JSON_BODY).subarray(0, 20)],
    ["br", Buffer.from("not brotli at all")],
    ["deflate", Buffer.from([0x78, 0x9c, 1, 2, 3])],
  ])("a %s body that is not what it says is 400", async (coding, body) => {
    expect(await refusal(decodeRequestBody(body, { "content-encoding": coding }, LIMIT))).toMatchObject({
      status: 400,
      message: "request body: content encoding does not match its bytes",
    });
  });

  it("an empty body needs no decoding", async () => {
    expect((await decodeRequestBody(Buffer.alloc(0), { "content-encoding": "gzip" }, LIMIT)).length).toBe(0);
  });

  it("counts decoded bytes against the limit: exactly the limit passes, one more is 413", async () => {
    const body = Buffer.alloc(4096, 0x61);
    for (const [coding, encode] of [
      ["gzip", gzipSync],
      ["deflate", deflateSync],
      ["br", brotliCompressSync],
    ] as const) {
      expect((await decodeRequestBody(encode(body), { "content-encoding": coding }, 4096)).length).toBe(4096);
      expect(await refusal(decodeRequestBody(encode(body), { "content-encoding": coding }, 4095))).toMatchObject({ status: 413, code: "payload_too_large" });
    }
  });

  it("stops a bomb at the limit instead of inflating it", async () => {
    // 16 gzip members of 64 MiB each: 1 GiB of zeros in ~1 MB.
    const bomb = Buffer.concat(Array<Buffer>(16).fill(gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 })));
    const started = performance.now();
    expect((await refusal(decodeRequestBody(bomb, { "content-encoding": "gzip" }, 64 * 1024))).status).toBe(413);
    // Inflating all of it takes a second or more; stopping at 64 KiB takes a few ms.
    expect(performance.now() - started).toBeLessThan(200);
  });

  it("no limit (Infinity) still decodes", async () => {
    expect((await decodeRequestBody(gzipSync(JSON_BODY), { "content-encoding": "gzip" }, Infinity)).equals(JSON_BODY)).toBe(true);
  });

  it("strips a UTF-8 BOM before JSON, also inside a coding", async () => {
    const withBom = Buffer.concat([BOM, JSON_BODY]);
    expect((await decodeRequestBody(withBom, {}, LIMIT)).equals(JSON_BODY)).toBe(true);
    expect((await decodeRequestBody(gzipSync(withBom), { "content-encoding": "gzip" }, LIMIT)).equals(JSON_BODY)).toBe(true);
  });
});

describe("stripUtf8Bom", () => {
  it("strips one BOM before JSON only", () => {
    expect(stripUtf8Bom(Buffer.concat([BOM, Buffer.from(' \n{"a":1}')])).toString()).toBe(' \n{"a":1}');
    const text = Buffer.concat([BOM, Buffer.from("hello")]);
    expect(stripUtf8Bom(text)).toBe(text);
    expect(
      stripUtf8Bom(Buffer.concat([BOM, BOM, JSON_BODY]))
        .subarray(0, 3)
        .equals(BOM),
    ).toBe(true);
    expect(stripUtf8Bom(BOM)).toEqual(BOM);
  });
});

describe("bodyKind", () => {
  const u16le = (s: string) => Buffer.from(s, "utf16le");
  const u16be = (s: string) => Buffer.from(s, "utf16le").swap16();
  const u32 = (s: string, big: boolean) =>
    Buffer.concat(
      [...s].map((c) => {
        const b = Buffer.alloc(4);
        if (big) b.writeUInt32BE(c.codePointAt(0)!);
        else b.writeUInt32LE(c.codePointAt(0)!);
        return b;
      }),
    );
  it.each([
    ["a JSON object", JSON_BODY, "json"],
    ["JSON whitespace first", Buffer.from(' \r\n\t{"a":1}'), "json"],
    ["a form feed first (lenient readers skip it)", Buffer.from('\f{"a":1}'), "json"],
    ["a vertical tab first", Buffer.from('\v{"a":1}'), "json"],
    ["NBSP first", Buffer.from('\u00a0{"a":1}'), "json"],
    ["a line separator first", Buffer.from('\u2028{"a":1}'), "json"],
    ["an ideographic space first", Buffer.from('\u3000{"a":1}'), "json"],
    ["a BOM left first", Buffer.concat([BOM, JSON_BODY]), "json"],
    ["UTF-16LE", u16le('{"a":1}'), "wide-json"],
    ["UTF-16LE, BOM", Buffer.concat([Buffer.from([0xff, 0xfe]), u16le('{"a":1}')]), "wide-json"],
    ["UTF-16BE", u16be('{"a":1}'), "wide-json"],
    ["UTF-16BE, BOM, blank first", Buffer.concat([Buffer.from([0xfe, 0xff]), u16be(' [{"a":1}]')]), "wide-json"],
    ["UTF-32LE", u32('{"a":1}', false), "wide-json"],
    ["UTF-32BE", u32(' {"a":1}', true), "wide-json"],
    ["UTF-32BE, BOM", Buffer.concat([Buffer.from([0, 0, 0xfe, 0xff]), u32('{"a":1}', true)]), "wide-json"],
    ["UTF-32LE, BOM", Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), u32('{"a":1}', false)]), "wide-json"],
    ["empty", Buffer.alloc(0), "other"],
    ["a JSON array", Buffer.from("[1]"), "other"],
    ["text", Buffer.from("hello"), "other"],
    ["multipart", Buffer.from("--x\r\ncontent-disposition: form-data\r\n\r\n{}\r\n--x--"), "other"],
    ["binary with NULs (PCM)", Buffer.from([0, 0, 0, 1, 0, 2, 0, 3]), "other"],
    ["UTF-16 text that is not JSON", u16le("hello"), "other"],
    ["a UTF-16 BOM on binary", Buffer.from([0xff, 0xfe, 0x01, 0x02, 0x03]), "other"],
    ["one byte", Buffer.from([0]), "other"],
  ] as const)("%s: %s", (_name, body, kind) => {
    expect(bodyKind(body)).toBe(kind);
  });
});
