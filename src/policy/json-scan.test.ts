/**
 * scanTopLevel against JSON.parse on a generated corpus and on mutations of it, plus the fixed
 * cases: malformed documents, duplicates (escaped too), depth, readers and splices.
 */
import { describe, expect, it } from "vitest";
import {
  JsonScanError,
  MAX_DEPTH,
  applySplices,
  insertField,
  insertionSplice,
  isNull,
  readArrayLength,
  readBoolean,
  readNumber,
  readString,
  replaceValue,
  replacementSplice,
  scanObjectValue,
  scanTopLevel,
  type ScanResult,
} from "./json-scan.js";

/** mulberry32: a small seeded generator, so a failure names a reproducible seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CHARS = ["a", "b", "z", "A", "0", " ", "-", "/", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "中", "😀", "\u2028", "\ud800", "\udc00", "\uffff"];
const WS = ["", "", "", " ", "\n", "\t", "\r\n  "];

/** Writes a random JSON text: random escapes (short, \u, either hex case), number forms and whitespace. */
function generator(seed: number) {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const ws = (): string => (r() < 0.3 ? pick(WS) : "");
  const str = (s: string): string => {
    let out = '"';
    for (const ch of s) {
      const code = ch.codePointAt(0)!;
      const u = (c: number): string => "\\u" + (r() < 0.5 ? c.toString(16).padStart(4, "0") : c.toString(16).padStart(4, "0").toUpperCase());
      if (ch === '"' || ch === "\\") out += r() < 0.8 ? "\\" + ch : u(code);
      else if (code < 0x20) out += r() < 0.5 && JSON.stringify(ch).length === 4 ? JSON.stringify(ch).slice(1, -1) : u(code);
      else if (ch === "/" && r() < 0.5) out += "\\/";
      else if (code > 0xffff && r() < 0.3) out += u(ch.charCodeAt(0)) + u(ch.charCodeAt(1));
      else if (r() < 0.1 && code <= 0xffff) out += u(code);
      else out += ch; // raw, lone surrogates included: UTF-8 makes them U+FFFD, as JSON.parse then sees
    }
    return out + '"';
  };
  const randomString = (): string => {
    const len = r() < 0.8 ? Math.floor(r() * 12) : Math.floor(r() * 300);
    let s = "";
    for (let i = 0; i < len; i++) s += r() < 0.6 ? String.fromCharCode(97 + Math.floor(r() * 26)) : pick(CHARS);
    return s;
  };
  const num = (): string => {
    const int = r() < 0.3 ? "0" : String(1 + Math.floor(r() * 10 ** Math.floor(r() * 12)));
    const frac = r() < 0.3 ? "." + String(Math.floor(r() * 1e6)) : "";
    const exp = r() < 0.2 ? pick(["e", "E"]) + pick(["", "+", "-"]) + String(Math.floor(r() * 400)) : "";
    return (r() < 0.3 ? "-" : "") + int + frac + exp;
  };
  const value = (depth: number): string => {
    const k = r();
    if (depth > 6 || k < 0.35) return str(randomString());
    if (k < 0.55) return num();
    if (k < 0.62) return pick(["true", "false", "null"]);
    if (k < 0.8) {
      const items = Array.from({ length: Math.floor(r() * 5) }, () => ws() + value(depth + 1) + ws());
      return "[" + (items.length ? items.join(",") : ws()) + "]";
    }
    return object(depth + 1);
  };
  const object = (depth: number, keys?: string[]): string => {
    const names = keys ?? [...new Set(Array.from({ length: Math.floor(r() * 6) }, randomString))];
    const parts = names.map((name) => ws() + str(name) + ws() + ":" + ws() + value(depth) + ws());
    return "{" + (parts.length ? parts.join(",") : ws()) + "}";
  };
  const top = (): string => {
    const keys = [...new Set(Array.from({ length: Math.floor(r() * 12) }, () => (r() < 0.3 ? pick(["model", "n", "tools", "1", "stream"]) : randomString())))];
    return ws() + object(1, keys) + ws();
  };
  return { top, r };
}

/** Top-level keys in order and the deepest nesting of a text JSON.parse accepted. */
function reference(text: string): { keys: string[]; depth: number } {
  const keys: string[] = [];
  let depth = 0,
    max = 0,
    expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      max = Math.max(max, ++depth);
      expectKey = c === "{";
    } else if (c === "}" || c === "]") depth--;
    else if (c === ",") expectKey = depth === 1 && keys.length > 0;
  }
  return { keys, depth: max };
}

/** What scanTopLevel must do with a body: its error message, or the keys it must find. */
function expected(body: Buffer): { error: string } | { keys: string[] } {
  const text = body.toString("utf8");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { error: "invalid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { error: "JSON top level is not an object" };
  const { keys, depth } = reference(text);
  if (new Set(keys).size !== keys.length) return { error: "duplicate top-level key" };
  if (depth > MAX_DEPTH) return { error: "JSON nested too deeply" };
  return { keys };
}

function outcome(body: Buffer): { error: string } | { scan: ScanResult } {
  try {
    return { scan: scanTopLevel(body) };
  } catch (err) {
    if (err instanceof JsonScanError) return { error: err.message };
    throw err;
  }
}

/** Checks one body against JSON.parse; returns a description of the mismatch, if any. */
function check(body: Buffer): string | undefined {
  const want = expected(body);
  const got = outcome(body);
  if ("error" in want || "error" in got) {
    const w = "error" in want ? want.error : "success";
    const g = "error" in got ? got.error : "success";
    return w === g ? undefined : `expected ${w}, got ${g}`;
  }
  const parsed = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
  const { fields, objectEnd } = got.scan;
  if (JSON.stringify([...fields.keys()]) !== JSON.stringify(want.keys)) return "keys differ";
  if (
    body[objectEnd] !== 0x7d ||
    body
      .subarray(objectEnd + 1)
      .toString()
      .trim() !== ""
  )
    return "objectEnd wrong";
  for (const f of fields.values()) {
    const raw = body.subarray(f.valueStart, f.valueEnd).toString("utf8");
    const v = parsed[f.key];
    const rawValue: unknown = JSON.parse(raw);
    if (JSON.stringify(rawValue) !== JSON.stringify(v)) return `value of ${f.key} differs`;
    if ((typeof v !== "object" || v === null) && !Object.is(rawValue, v)) return `value of ${f.key} differs`;
    if (typeof v === "string" && readString(body, f) !== v) return "readString differs";
    if (typeof v === "number" && !Object.is(readNumber(body, f), v)) return "readNumber differs";
    if (typeof v === "boolean" && readBoolean(body, f) !== v) return "readBoolean differs";
    if (Array.isArray(v) && readArrayLength(body, f) !== v.length) return "readArrayLength differs";
    if ((v === null) !== isNull(body, f)) return "isNull differs";
  }
  return undefined;
}

/** The same bytes at a given offset of a larger ArrayBuffer whose other bytes are `fill`. */
function placed(text: Buffer, offset: number, fill: number, after = 7): Buffer {
  const ab = new ArrayBuffer(offset + text.length + after);
  new Uint8Array(ab).fill(fill);
  const out = Buffer.from(ab, offset, text.length);
  text.copy(out);
  return out;
}

describe("scanTopLevel against JSON.parse", () => {
  it("agrees on a generated corpus, at every alignment and with quotes, backslashes or controls around it", () => {
    for (let seed = 1; seed <= 1500; seed++) {
      const body = Buffer.from(generator(seed).top());
      for (const [offset, fill, after] of [
        [0, 0x20, 7],
        [1, 0x22, 0],
        [2, 0x5c, 1],
        [3, 0x00, 3],
      ] as const) {
        const problem = check(placed(body, offset, fill, after));
        if (problem) expect.fail(`seed ${seed} offset ${offset}: ${problem}\n${body.toString()}`);
      }
    }
  });

  it("agrees on mutated documents (acceptance and error kind)", () => {
    const INTERESTING = [
      0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x20, 0x30, 0x2d, 0x65, 0x2e, 0x75, 0x00, 0x1f, 0x7f, 0x80, 0xff, 0x74, 0x6e, 0x09, 0x0c,
    ];
    let accepted = 0;
    for (let seed = 1; seed <= 1500; seed++) {
      const { top, r } = generator(seed + 100_000);
      const original = Buffer.from(top());
      for (let m = 0; m < 8; m++) {
        let body = Buffer.from(original);
        for (let edits = 1 + Math.floor(r() * 2); edits > 0; edits--) {
          const at = Math.floor(r() * (body.length + 1));
          const byte = INTERESTING[Math.floor(r() * INTERESTING.length)]!;
          const op = r();
          if (op < 0.3) body = Buffer.concat([body.subarray(0, at), Buffer.of(byte), body.subarray(at)]);
          else if (op < 0.6) body = Buffer.concat([body.subarray(0, at), body.subarray(at + 1)]);
          else if (op < 0.85 && at < body.length) body[at] = byte;
          else body = body.subarray(0, at);
        }
        const problem = check(placed(body, m & 3, m & 4 ? 0x22 : 0x5c));
        if (problem) expect.fail(`seed ${seed} mutation ${m}: ${problem}\n${JSON.stringify(body.toString("latin1"))}`);
        if (!("error" in expected(body))) accepted++;
      }
    }
    expect(accepted).toBeGreaterThan(500); // the corpus exercises both outcomes
  });

  it("refuses every proper prefix of a document", () => {
    const body = Buffer.from(generator(7).top().trim());
    for (let end = 0; end < body.length; end++) expect(check(body.subarray(0, end)), `prefix ${end}`).toBeUndefined();
  });
});

describe("scanTopLevel fixed cases", () => {
  const err = (text: string | Buffer): string | undefined => {
    const got = outcome(typeof text === "string" ? Buffer.from(text) : text);
    return "error" in got ? got.error : undefined;
  };

  it.each([
    "",
    " ",
    "{",
    "}",
    '{"a"}',
    '{"a":}',
    '{"a" 1}',
    '{"a":1,}',
    '{,"a":1}',
    '{"a":1 "b":2}',
    "{'a':1}",
    "{a:1}",
    '{"a":[1,]}',
    '{"a":[,1]}',
    '{"a":01}',
    '{"a":-}',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":1e}',
    '{"a":1e+}',
    '{"a":+1}',
    '{"a":0x10}',
    '{"a":-01}',
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":tru}',
    '{"a":True}',
    '{"a":nul}',
    '{"a":nulls}',
    '{"a":"\\x41"}',
    '{"a":"\\u12"}',
    '{"a":"\\u12G4"}',
    '{"a":"\\U0041"}',
    '{"a":"\\\'"}',
    '{"a":"\t"}',
    '{"a":"\x00"}',
    '{"a":"\x1f"}',
    '{"a":"unterminated}',
    '{"a":1}}',
    '{"a":1} x',
    "{}{}",
    "\ufeff{}",
    "{\u00a0}",
    "{\v}",
    "{\f}",
    '{"a":1}\u2028',
    "{/*c*/}",
    '{"a":[1}',
    '{"a":{]}',
  ])("refuses %j as invalid JSON, as JSON.parse does", (text) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(err(text)).toBe("invalid JSON");
  });

  it.each(["[]", "[1]", "1", '"x"', "null", "true", " [ ] "])("refuses the non-object %j", (text) => {
    expect(err(text)).toBe("JSON top level is not an object");
  });

  it("accepts what JSON.parse accepts: lone surrogates, invalid UTF-8 and DEL inside strings, any whitespace mix", () => {
    for (const text of ['{"a":"\\ud800"}', '{"\\udc00":1}', ' \r\n\t{ "a" : [ 1 , -0.5e-3 , true , null , { } , [ ] ] } \n', '{"a":"\x7f"}']) {
      expect(err(text)).toBeUndefined();
    }
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.of(0xff, 0xc0, 0xe2, 0x82), Buffer.from('","b":1}')]);
    expect(scanTopLevel(bad).fields.get("b")).toBeDefined();
    expect(readString(bad, scanTopLevel(bad).fields.get("a")!)).toBe(JSON.parse(bad.toString()).a);
    expect(err(Buffer.concat([Buffer.from('{"a":1'), Buffer.of(0xff), Buffer.from("}")]))).toBe("invalid JSON");
  });

  it("refuses duplicate top-level keys, escaped or not, and allows nested duplicates", () => {
    for (const text of [
      '{"model":"a","model":"b"}',
      '{"model":"a","\\u006dodel":"b"}',
      '{"m\\u006Fdel":"a","model":"b"}',
      '{"a/b":1,"a\\/b":2}',
      '{"é":1,"\\u00e9":2}',
      '{"😀":1,"\\ud83d\\ude00":2}',
      '{"a":1,"b":2,"a":3}',
      '{"\\"":1,"\\u0022":2}',
    ])
      expect(err(text), text).toBe("duplicate top-level key");
    // Distinct invalid UTF-8 keys both decode to U+FFFD: refused, the safe side.
    expect(err(Buffer.concat([Buffer.from('{"'), Buffer.of(0xff), Buffer.from('":1,"'), Buffer.of(0xfe), Buffer.from('":2}')]))).toBe(
      "duplicate top-level key",
    );
    expect(err('{"a":{"b":1,"b":2},"c":[{"d":1,"d":2}]}')).toBeUndefined();
  });

  it("keeps keys apart when their hashes collide and decodes escaped keys", () => {
    expect([...scanTopLevel(Buffer.from('{"Aa":1,"BB":2}')).fields.keys()]).toEqual(["Aa", "BB"]);
    expect([...scanTopLevel(Buffer.from('{"BB":1,"Aa":2}')).fields.keys()]).toEqual(["BB", "Aa"]);
    expect([...scanTopLevel(Buffer.from('{"\\u006dodel":1,"x\\ny":2,"é":3}')).fields.keys()]).toEqual(["model", "x\ny", "é"]);
  });

  it(`allows ${MAX_DEPTH} levels of nesting and refuses ${MAX_DEPTH + 1}`, () => {
    const nest = (levels: number, open: string, close: string): string => "{" + `"a":${open.repeat(levels - 1)}1${close.repeat(levels - 1)}` + "}";
    expect(err(nest(MAX_DEPTH, "[", "]"))).toBeUndefined();
    expect(err(nest(MAX_DEPTH + 1, "[", "]"))).toBe("JSON nested too deeply");
    expect(err(nest(MAX_DEPTH, '{"b":', "}"))).toBeUndefined();
    expect(err(nest(MAX_DEPTH + 1, '{"b":', "}"))).toBe("JSON nested too deeply");
    expect(err("{" + '"a":'.padEnd(4, " ") + "[".repeat(100_000))).toBe("JSON nested too deeply"); // no stack growth
  });

  it("finds a control character or a bad escape anywhere in a long string, at every alignment", () => {
    const long = "x".repeat(5000);
    for (const at of [0, 1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 2500, 4996, 4997, 4998, 4999]) {
      for (const offset of [0, 1, 2, 3]) {
        for (const bad of ["\x00", "\x1f", "\n", "\\x", "\\u00g0", "\\"]) {
          const body = Buffer.from(`{"k":"${long.slice(0, at)}${bad}${long.slice(at)}"}`);
          expect(err(placed(body, offset, 0x41)), `${JSON.stringify(bad)} at ${at}+${offset}`).toBe("invalid JSON");
        }
        const good = Buffer.from(`{"k":"${long.slice(0, at)}\\"\\u00e9\\\\${long.slice(at)}","z":1}`);
        expect(err(placed(good, offset, 0x22, 0)), `good at ${at}+${offset}`).toBeUndefined();
      }
    }
  });

  it("does not trust bytes past the body in its ArrayBuffer", () => {
    for (const offset of [0, 1, 2, 3]) {
      for (const fill of [0x22, 0x7d, 0x5c]) {
        expect(err(placed(Buffer.from('{"a":"abcdefghijklmnopqrstuvwxyz'), offset, fill))).toBe("invalid JSON");
        expect(err(placed(Buffer.from('{"a":"abc'), offset, fill, 0))).toBe("invalid JSON");
      }
    }
  });
});

describe("readers", () => {
  const body = Buffer.from('{"s":"a\\"b\\u00e9😀","e":"","n":-12.5e1,"i":7,"t":true,"f":false,"z":null,"a":[1,[2,3],{"x":[]}],"b":[],"o":{"p":1}}');
  const scan = scanTopLevel(body);
  const f = (k: string) => scan.fields.get(k)!;

  it("read each kind and refuse the others", () => {
    expect(readString(body, f("s"))).toBe('a"bé😀');
    expect(readString(body, f("e"))).toBe("");
    expect(readNumber(body, f("n"))).toBe(-125);
    expect(readNumber(body, f("i"))).toBe(7);
    expect(readBoolean(body, f("t"))).toBe(true);
    expect(readBoolean(body, f("f"))).toBe(false);
    expect(isNull(body, f("z"))).toBe(true);
    expect(readArrayLength(body, f("a"))).toBe(3);
    expect(readArrayLength(body, f("b"))).toBe(0);
    for (const k of ["n", "t", "z", "a", "o"]) expect(readString(body, f(k))).toBeUndefined();
    for (const k of ["s", "t", "z", "a"]) expect(readNumber(body, f(k))).toBeUndefined();
    for (const k of ["s", "i", "z"]) expect(readBoolean(body, f(k))).toBeUndefined();
    expect(readArrayLength(body, f("o"))).toBeUndefined();
  });

  it("scan a nested object in place, refusing its duplicates", () => {
    const inner = scanObjectValue(body, f("o"))!;
    expect(readNumber(body, inner.fields.get("p")!)).toBe(1);
    expect(body[inner.objectEnd]).toBe(0x7d);
    expect(scanObjectValue(body, f("a"))).toBeUndefined();
    const dup = Buffer.from('{"o":{"p":1,"\\u0070":2}}');
    expect(() => scanObjectValue(dup, scanTopLevel(dup).fields.get("o")!)).toThrow("duplicate top-level key");
  });
});

describe("splices", () => {
  /** The body with bytes [start, end) replaced, as a string comparison. */
  const expectSplice = (before: Buffer, after: Buffer, start: number, end: number, text: string): void => {
    expect(after.subarray(0, start).equals(before.subarray(0, start))).toBe(true);
    expect(after.subarray(start, start + Buffer.byteLength(text)).toString()).toBe(text);
    expect(after.subarray(start + Buffer.byteLength(text)).equals(before.subarray(end))).toBe(true);
  };

  it.each(["{}", "{ }", " {\n} ", '{"a":1}', '{"a":1 \n}', '{ "a" : "é" , "b":[1] }\n'])("insertField into %j", (text) => {
    const body = Buffer.from(text);
    const scan = scanTopLevel(body);
    const out = insertField(body, scan, "max_tokens", "100");
    expect(JSON.parse(out.toString())).toEqual({ ...JSON.parse(text), max_tokens: 100 });
    expect(out.subarray(0, scan.objectEnd).equals(body.subarray(0, scan.objectEnd))).toBe(true);
    expect(out.subarray(out.length - (body.length - scan.objectEnd)).equals(body.subarray(scan.objectEnd))).toBe(true);
    expect(scanTopLevel(out).fields.size).toBe(scan.fields.size + 1);
  });

  it("replaceValue changes only that value, first, middle and last", () => {
    const body = Buffer.from('{"a":1,"b":{"c":[2]},"c":"x"}');
    const scan = scanTopLevel(body);
    for (const k of ["a", "b", "c"]) {
      const f = scan.fields.get(k)!;
      const out = replaceValue(body, f, '{"new":true}');
      expectSplice(body, out, f.valueStart, f.valueEnd, '{"new":true}');
      expect(JSON.parse(out.toString())[k]).toEqual({ new: true });
    }
  });

  it("keep every other byte on generated bodies, inserting and replacing in one copy", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const body = Buffer.from(generator(seed).top());
      const scan = scanTopLevel(body);
      const parsed = JSON.parse(body.toString()) as Record<string, unknown>;
      const first = [...scan.fields.values()][0];
      const splices = [
        insertionSplice(scan, [
          ["__cap", "5"],
          ["__so", '{"include_usage":true}'],
        ]),
      ];
      if (first) splices.push(replacementSplice(first, '"replaced"'));
      const out = applySplices(body, splices);
      const want = { ...parsed, __cap: 5, __so: { include_usage: true }, ...(first ? { [first.key]: "replaced" } : {}) };
      expect(JSON.parse(out.toString()), `seed ${seed}`).toEqual(want);
      expect(out.subarray(0, first ? first.valueStart : scan.objectEnd).equals(body.subarray(0, first ? first.valueStart : scan.objectEnd))).toBe(true);
      expect(out.subarray(out.length - (body.length - scan.objectEnd)).equals(body.subarray(scan.objectEnd))).toBe(true);
    }
  });

  it("refuse a present key, bad JSON, and overlapping or same-point splices", () => {
    const body = Buffer.from('{"a":1,"b":2}');
    const scan = scanTopLevel(body);
    expect(() => insertField(body, scan, "a", "1")).toThrow("field already present");
    expect(() =>
      insertionSplice(scan, [
        ["x", "1"],
        ["x", "2"],
      ]),
    ).toThrow("field already present");
    expect(() => insertField(body, scan, "x", '1,"y":2')).toThrow("splice value");
    expect(() => replaceValue(body, scan.fields.get("a")!, "")).toThrow("splice value");
    const a = replacementSplice(scan.fields.get("a")!, "3");
    expect(() => applySplices(body, [a, { start: 5, end: 8, text: "" }])).toThrow(RangeError);
    expect(() => applySplices(body, [insertionSplice(scan, [["x", "1"]]), insertionSplice(scan, [["y", "1"]])])).toThrow(RangeError);
    expect(applySplices(body, [])).toBe(body);
  });

  it("escape inserted keys", () => {
    const body = Buffer.from("{}");
    const out = insertField(body, scanTopLevel(body), 'we"ird\n', "1");
    expect(JSON.parse(out.toString())).toEqual({ 'we"ird\n': 1 });
  });
});
