/**
 * Fuzz: request bodies read by the policy check on model-pinned tokens (DESIGN 3.4): JSON built
 * field by field (escaped and duplicate keys, every value type, nesting, whitespace, truncation,
 * invalid UTF-8, a BOM, oversize) for the OpenAI and Anthropic shapes, and the model segment of
 * Gemini paths. A request reaches the provider only when every top-level `model` it carries is
 * an allowed string, with its bytes unchanged; anything else is a 4xx, never a 5xx.
 */
import fc from "fast-check";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { expectNoFragment, fragments, RawClient, reportCases, rssMb } from "./support/fuzz.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const MAX_BODY = 64 * 1024;
const ALLOWED = ["gpt-allowed", "m", "gpt-\u00e9t\u00e9", "claude-allowed"];
const GEMINI_ALLOWED = "gemini-allowed";
const RUNS = { json: 1500, raw: 500, gemini: 700 };

const { relay, mock } = useRelay({ mock: { chunks: 1 }, config: { maxBodyBytes: MAX_BODY }, log: createLogger("debug", (l) => logLines.push(l)) });
let client: RawClient;
const tokens: Record<string, string> = {};
let frags: string[];
const logLines: string[] = [];
let cases = 0;
let rssStart = 0;

beforeAll(async () => {
  client = RawClient.for(relay.url);
  tokens.openai = (await relay.issue({ limits: { models: ALLOWED } })).secret;
  tokens.anthropic = (await relay.issue({ provider: "anthropic", limits: { models: ALLOWED } })).secret;
  tokens.gemini = (await relay.issue({ provider: "gemini", limits: { models: [GEMINI_ALLOWED] } })).secret;
  frags = fragments(UPSTREAM_KEY, ...Object.values(tokens));
  rssStart = rssMb();
});
afterAll(async () => {
  client?.close();
});
beforeEach(() => mock.reset());

const ROUTES = { openai: "/api/openai/v1/chat/completions", anthropic: "/api/anthropic/v1/messages" } as const;

/** Posts `body`; returns whether the provider got it. Checks status, echo and byte identity. */
async function post(provider: "openai" | "anthropic" | "gemini", target: string, body: Buffer): Promise<{ forwarded: boolean; status: number }> {
  cases++;
  const before = mock.requests.length;
  const res = await client.request("POST", target, { authorization: `Bearer ${tokens[provider]}`, "content-type": "application/json" }, body);
  const what = `${target} ${JSON.stringify(body.toString("latin1").slice(0, 160))} -> ${res.status}`;
  expect(res.status, what).toBeLessThan(500);
  expectNoFragment(res.head + "\n" + res.body.toString("latin1"), frags, what);
  const forwarded = mock.requests.length > before;
  if (forwarded) {
    const got = mock.requests[before]!.body;
    // A leading UTF-8 BOM is stripped before the policy reads the body (issue 17).
    const sent = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? body.subarray(3) : body;
    // The one splice these tokens cause: an OpenAI stream gets stream_options.include_usage
    // (always metered); everything else must arrive byte for byte.
    const streamed = provider === "openai" && (JSON.parse(sent.toString()) as { stream?: unknown }).stream === true;
    if (streamed)
      expect(JSON.parse(got.toString()), `${what}: only stream_options added`).toEqual({
        ...(JSON.parse(sent.toString()) as object),
        stream_options: { include_usage: true },
      });
    else expect(got.equals(sent), `${what}: bytes changed on the way`).toBe(true);
  } else {
    expect([400, 403, 413], what).toContain(res.status);
  }
  return { forwarded, status: res.status };
}

/** Keys that JSON decodes to `model`, and near misses that must not count as it. */
const modelKey = fc.constantFrom('"model"', '"\\u006dodel"', '"mod\\u0065l"', '"\\u006D\\u006F\\u0064\\u0065\\u006C"', '"m\\u006fdel"');
const otherKey = fc.oneof(
  fc.constantFrom('"Model"', '"model "', '" model"', '"model\\u0000"', '"models"', '"messages"', '"stream"', '"max_tokens"', '"mode\\u004C"'),
  fc.string({ maxLength: 10 }).map((s) => JSON.stringify(s)),
);
const modelValue = fc.oneof(
  fc.constantFrom(...ALLOWED).map((m) => JSON.stringify(m)),
  fc.constantFrom(
    '"gpt-\\u00e9t\\u00e9"',
    '"gpt-allowe\\u0064"',
    '"gpt-evil"',
    '"GPT-ALLOWED"',
    '"gpt-allowed "',
    '"gpt-allowed\\u0000"',
    '""',
    '"gpt-e\\u0301te\\u0301"',
  ),
  fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s)),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.constantFrom("null", "true", "7", "1e999", '["gpt-allowed"]', '{"model":"gpt-allowed"}', "-0"),
);
const anyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.constantFrom('[{"role":"user","content":"hi"}]', "true", "{}", '"x"'),
);
const ws = fc.constantFrom("", " ", "\n", "\t", " \r\n ");
const field = fc.oneof({ weight: 2, arbitrary: fc.tuple(modelKey, modelValue) }, { weight: 3, arbitrary: fc.tuple(otherKey, anyValue) });

/** Decodes a JSON key literal; undefined if it is not one. */
function decodeKey(raw: string): string | undefined {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return undefined;
  }
}

// Generous: a property runs its cases one after another, and CI machines can be busy.
describe("fuzz: JSON bodies and model pins", { timeout: 180_000 }, () => {
  it("objects built field by field: forwarded only if every top-level model is allowed", async () => {
    const body = fc.tuple(fc.array(field, { maxLength: 6 }), ws, ws, fc.constantFrom("", "", "", "trunc", "trail", "bom"), fc.nat());
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("openai" as const, "anthropic" as const), body, async (p, [fields, w1, w2, damage, cut]) => {
        let text = `{${w1}${fields.map(([k, v]) => `${k}${w2}:${w1}${v}`).join(`,${w2}`)}${w2}}`;
        if (damage === "trunc") text = text.slice(0, cut % Math.max(1, text.length));
        else if (damage === "trail") text += ',"x":1}';
        else if (damage === "bom") text = "\ufeff" + text;
        const { forwarded } = await post(p, ROUTES[p], Buffer.from(text));
        if (!forwarded) return;
        // What any JSON reader of the top level would take as the model: every occurrence.
        const models = fields.filter(([k]) => decodeKey(k) === "model").map(([, v]) => decodeKey(v));
        expect(models.length, text).toBeGreaterThan(0);
        for (const m of models) expect(ALLOWED, `${text}: model ${JSON.stringify(m)} was forwarded`).toContain(m);
      }),
      // Regression: duplicate top-level keys were read last-wins, so this one went through.
      {
        numRuns: RUNS.json,
        examples: [
          [
            "openai",
            [
              [
                ['"model"', '"GPT-ALLOWED"'],
                ['"model"', '"gpt-\\u00e9t\\u00e9"'],
              ],
              "",
              "",
              "",
              0,
            ],
          ],
        ],
      },
    );
  });

  it("raw bytes, invalid UTF-8, deep nesting and oversize bodies: a 4xx, never a 5xx", async () => {
    const deep = fc.integer({ min: 1, max: 20_000 }).map((n) => `{"model":"gpt-allowed","x":${"[".repeat(n)}${"]".repeat(n)}}`);
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)),
      fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.concat([Buffer.from('{"model":"gpt-allowed","x":"'), Buffer.from(a), Buffer.from('"}')])),
      fc.uint8Array({ minLength: 1, maxLength: 4 }).map((a) => Buffer.concat([Buffer.from('{"model":"gpt-'), Buffer.from(a), Buffer.from('"}')])),
      deep.map((s) => Buffer.from(s)),
      fc.integer({ min: MAX_BODY - 64, max: MAX_BODY + 64 }).map((n) => Buffer.from(`{"model":"gpt-allowed","pad":"${"x".repeat(Math.max(0, n - 34))}"}`)),
      fc.json().map((s) => Buffer.from(s)),
      fc
        .constantFrom("", "{", "}", "[]", "null", '"model"', '{"model":', '{"model":"gpt-allowed"', '{"model":"gpt-allowed"}garbage')
        .map((s) => Buffer.from(s)),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("openai" as const, "anthropic" as const), body, async (p, b) => {
        const { forwarded, status } = await post(p, ROUTES[p], b);
        if (b.length > MAX_BODY) expect(status).toBe(413);
        if (forwarded) expect(ALLOWED).toContain((JSON.parse(b.toString("utf8")) as { model: unknown }).model);
      }),
      { numRuns: RUNS.raw },
    );
  });

  it("Gemini: the model in the path, however it is spelled, must be the pinned one", async () => {
    const seg = fc.oneof(
      fc.constantFrom(
        GEMINI_ALLOWED,
        "%67emini-allowed",
        "gemini%2Dallowed",
        "GEMINI-ALLOWED",
        "gemini-allowed%20",
        "gemini-evil",
        "gemini-allowed:evil",
        "gemini-allowed%3Aevil",
        "%zz",
        "%",
        "%E0%A4%A",
        "%C0%AE",
        "gemini-allowed;v=1",
        "gemini-allowed/../gemini-evil",
        "..",
        "%2e%2e",
        "",
        "gemini-allowed%00",
        "\u00e9",
      ),
      fc.string({ unit: "binary-ascii", maxLength: 10 }),
      fc.string({ maxLength: 6 }).map((s) => GEMINI_ALLOWED + s),
    );
    const prefix = fc.constantFrom("/v1beta/models/", "/v1/models/", "/v1beta/tunedModels/", "/v1beta/models/x/models/", "/v1beta//models/", "/v1beta/Models/");
    const verb = fc.constantFrom(":generateContent", ":streamGenerateContent?alt=sse", ":countTokens", "", ":generateContent/", ":generateContent:x");
    await fc.assert(
      fc.asyncProperty(prefix, seg, verb, async (pre, s, v) => {
        const target = `/api/gemini${pre}${s}${v}`;
        const { forwarded } = await post("gemini", target, Buffer.from('{"contents":[]}'));
        if (!forwarded) return;
        // Google's reading (`/v1beta/{model=models/*}:verb`): a well-formed model id must be the pinned one.
        const path = mock.requests[mock.requests.length - 1]!.path;
        const m = /^\/v1(?:beta)?\/models\/([^/]+):[A-Za-z]+$/.exec(path);
        let model: string | undefined;
        try {
          model = m ? decodeURIComponent(m[1]!) : undefined;
        } catch {
          model = undefined; // not a model id Google could read
        }
        if (model !== undefined && /^[A-Za-z0-9._-]+$/.test(model)) expect(model, target).toBe(GEMINI_ALLOWED);
      }),
      // Regression: a malformed percent-escape in the model segment was a 500 (URIError).
      {
        numRuns: RUNS.gemini,
        examples: [
          ["/v1beta/models/", "%zz", ":generateContent"],
          ["/v1/models/", "%E0%A4%A", ":countTokens"],
        ],
      },
    );
  });

  it("afterwards: the relay answers, memory is bounded, no internal error was logged", async () => {
    expect((await client.request("GET", "/healthz")).status).toBe(200);
    console.log(`fuzz-bodies: rss ${rssStart} MB -> ${rssMb()} MB`);
    expect(rssMb() - rssStart).toBeLessThan(256);
    expect(logLines.filter((l) => l.includes('"level":"error"'))).toEqual([]);
    expectNoFragment(logLines.join("\n"), frags, "the relay's log");
    reportCases("fuzz", "fuzz-bodies", cases);
    expect(cases).toBeGreaterThanOrEqual(Object.values(RUNS).reduce((a, b) => a + b, 0));
  });
});
