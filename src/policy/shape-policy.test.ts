/**
 * The request policy works from a shape's data alone (issue 20, move 4): a shape it has never
 * heard of gets its caps, tools and usage option checked, and no shared policy code names a
 * provider or declares the shape union again.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SHAPES } from "../providers/shapes/index.js";
import { SHAPE_NAMES } from "../providers/shape-name.js";
import { scanTopLevel } from "./json-scan.js";
import { applyRequestPolicy, PolicyViolation, type RequestPolicy } from "./request-policy.js";
import { asksForUsage, type ShapePolicy } from "./shape-policy.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A made-up API: caps in `options.limit`, choices in `options.count`, usage under `report.usage`. */
const ACME: ShapePolicy = {
  endpoints: [{ path: /\/generate$/, capField: "limit", usageOption: { field: "report", key: "usage" } }],
  toolFields: ["plugins"],
  capFields: ["limit"],
  choiceFields: ["count"],
  capsIn: ["options"],
  streamField: "live",
  remoteInput: ['"attachment_id"'],
};

const RULES: RequestPolicy = { maxOutputTokens: 50, maxN: 2, toolsAllowed: false, forceStreamUsage: true, measure: true };

function run(body: object, path = "/v2/generate") {
  const raw = Buffer.from(JSON.stringify(body));
  return applyRequestPolicy({ shape: ACME, path, body: raw, scan: scanTopLevel(raw) }, RULES);
}

function refusal(body: object): string {
  try {
    run(body);
  } catch (e) {
    if (e instanceof PolicyViolation) return e.kind;
    throw e;
  }
  return "none";
}

describe("a shape is data", () => {
  it("inserts the cap where the shape keeps it and forces its usage option on streams", () => {
    const out = run({ prompt: "x", live: true });
    expect(JSON.parse(out.body.toString())).toEqual({ prompt: "x", live: true, options: { limit: 50 }, report: { usage: true } });
    expect(out).toMatchObject({ outputCap: 50, choices: 1, usageSpliced: true });
    expect(JSON.parse(run({ options: { count: 2 } }).body.toString())).toEqual({ options: { count: 2, limit: 50 } });
    // Not a generation endpoint: nothing inserted.
    expect(run({ prompt: "x" }, "/v2/embed").body.toString()).toBe('{"prompt":"x"}');
  });

  it("refuses by the shape's own field names", () => {
    expect(refusal({ plugins: [] })).toBe("tools");
    expect(refusal({ options: { limit: 51 } })).toBe("max_tokens");
    expect(refusal({ options: { count: 3 } })).toBe("n");
    expect(refusal({ OPTIONS: {} })).toBe("malformed");
    expect(refusal({ options: 1 })).toBe("malformed");
    expect(() => run({ options: 1 })).toThrow("options must be an object");
  });

  it("says which shapes need their streams' usage asked for", () => {
    expect(SHAPE_NAMES.filter((n) => asksForUsage(SHAPES[n].policy))).toEqual(["openai"]);
  });
});

describe("provider knowledge stays on the provider", () => {
  const sources = (dir: string): string[] =>
    readdirSync(join(ROOT, dir))
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
      .map((f) => join(dir, f));

  it("no shared policy code names a shape", () => {
    for (const file of [...sources("src/policy"), "src/relay/token-policy.ts"]) {
      const text = readFileSync(join(ROOT, file), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
      expect(text, file).not.toMatch(/["'](?:openai|anthropic|gemini)["']/);
    }
  });

  it("the union of shape names is declared once", () => {
    const union = /"openai"\s*\|\s*"anthropic"\s*\|\s*"gemini"/;
    const files = [...sources("src/policy"), ...sources("src/providers"), ...sources("console/src")];
    expect(files.filter((f) => union.test(readFileSync(join(ROOT, f), "utf8")))).toEqual([]);
  });
});
