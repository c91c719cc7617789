import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { boundaryOf, leadingFields, PartWatcher, type PartHead } from "./multipart-model.js";

const B = "----formdata-undici-0123";
const part = (disposition: string, value: string) => `--${B}\r\nContent-Disposition: form-data; ${disposition}\r\n\r\n${value}\r\n`;
const FORM = Buffer.from(
  part('name="model"', "whisper-1") +
    part('name="prompt"', `a "quoted" \r\n--${B.slice(0, 10)} not a delimiter`) +
    `--${B}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n` +
    "\0\x01binary\r\n--x--\r\n" +
    "\r\n" +
    part('name="model"', "gpt-4o") +
    `--${B}--\r\n`,
);

/** The heads a watcher reports when the form arrives cut at `cuts`. */
function heads(body: Buffer, cuts: number[], skip = 0): string[] {
  const seen: string[] = [];
  const w = new PartWatcher(B, skip, (h: PartHead) => seen.push(`${h.name}${h.file ? "(file)" : ""}`));
  let at = 0;
  for (const cut of [...cuts, body.length]) {
    w.feed(body.subarray(at, cut));
    at = cut;
  }
  return seen;
}

describe("boundaryOf", () => {
  it("reads quoted and plain boundaries, refuses none or two", () => {
    expect(boundaryOf(`multipart/form-data; boundary=${B}`)).toBe(B);
    expect(boundaryOf('multipart/form-data; charset=utf-8; boundary="a b"')).toBe("a b");
    expect(() => boundaryOf("multipart/form-data")).toThrow(RelayError);
    expect(() => boundaryOf("multipart/form-data; boundary=a; boundary=b")).toThrow(RelayError);
  });
});

describe("leadingFields", () => {
  it("stops at the first file part with the fields before it", () => {
    const got = leadingFields(FORM, B, true, 64 * 1024)!;
    expect(got.stop).toBe("file");
    expect(got.fields.map((f) => [f.name, f.value.toString()])).toEqual([
      ["model", "whisper-1"],
      ["prompt", `a "quoted" \r\n--${B.slice(0, 10)} not a delimiter`],
    ]);
  });

  it("asks for more bytes until it can tell, and stops at the bound", () => {
    expect(leadingFields(FORM.subarray(0, 20), B, false, 64 * 1024)).toBeUndefined();
    expect(leadingFields(FORM.subarray(0, 60), B, false, 50)).toMatchObject({ stop: "bound", fields: [] });
  });

  it("refuses what a lenient reader could read otherwise", () => {
    const bad = [
      `preamble\r\n${part('name="model"', "x")}--${B}--`,
      `--${B}\r\nContent-Disposition: form-data; name*=UTF-8''model\r\n\r\nx\r\n--${B}--`,
      `--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Transfer-Encoding: base64\r\n\r\neA==\r\n--${B}--`,
      `--${B}\r\nContent-Disposition: form-data; name="model"; name="n"\r\n\r\nx\r\n--${B}--`,
    ];
    for (const body of bad) expect(() => leadingFields(Buffer.from(body), B, true, 64 * 1024), body).toThrow(RelayError);
  });
});

describe("PartWatcher", () => {
  const whole = heads(FORM, []);

  it("sees every part head, the one behind the file too", () => {
    expect(whole).toEqual(["model", "prompt", "file(file)", "model"]);
    expect(heads(FORM, [], 3)).toEqual(["model"]);
  });

  it("sees the same heads however the body is cut into chunks", () => {
    for (let a = 1; a < FORM.length; a++) expect(heads(FORM, [a]), `cut at ${a}`).toEqual(whole);
    for (let a = 1; a < FORM.length; a += 7) for (let b = a + 1; b < FORM.length; b += 5) expect(heads(FORM, [a, b])).toEqual(whole);
  });

  it("cuts the stream when the check throws", () => {
    const w = new PartWatcher(B, 3, (h) => {
      throw new RelayError("permission_denied", `late ${h.name}`);
    });
    expect(() => w.feed(FORM)).toThrow("late model");
  });
});
