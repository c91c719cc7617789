/** Every rule of applyRequestPolicy, and the ways a client could try to get around them. */
import { describe, expect, it } from "vitest";
import { JsonScanError, scanTopLevel } from "./json-scan.js";
import { PolicyViolation, applyRequestPolicy, type PolicyRequest, type RequestPolicy } from "./request-policy.js";
import { SHAPES } from "../providers/shapes/index.js";
import type { ShapeName } from "../providers/types.js";

const OPEN: RequestPolicy = { toolsAllowed: true, forceStreamUsage: false };

interface Call {
  shape?: ShapeName;
  path?: string;
  pathModel?: string;
  capField?: string;
}

function apply(
  body: string | object,
  policy: Partial<RequestPolicy>,
  call: Call = {},
): { out: Buffer; text: string; model: string | undefined; same: boolean } {
  const raw = Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  const shape = call.shape ?? "openai";
  const path =
    call.path ?? (shape === "anthropic" ? "/v1/messages" : shape === "gemini" ? "/v1beta/models/gemini-2.5-flash:generateContent" : "/v1/chat/completions");
  const req: PolicyRequest = { shape: SHAPES[shape].policy, path, body: raw, scan: scanTopLevel(raw), pathModel: call.pathModel, capField: call.capField };
  const { body: out, model } = applyRequestPolicy(req, { ...OPEN, ...policy });
  scanTopLevel(out); // still valid, no duplicate introduced
  return { out, text: out.toString(), model, same: out === raw };
}

function refusal(body: string | object, policy: Partial<RequestPolicy>, call: Call = {}): { kind: string; message: string } {
  try {
    apply(body, policy, call);
  } catch (err) {
    if (err instanceof PolicyViolation) return { kind: err.kind, message: err.message };
    throw err;
  }
  return expect.fail("expected a PolicyViolation");
}

const parsed = (text: string): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;

describe("models", () => {
  const pin = { models: new Set(["gpt-4o", "gpt-4o-mini"]) };

  it("passes a pinned model through untouched and returns it", () => {
    const r = apply({ model: "gpt-4o", messages: [] }, pin);
    expect(r).toMatchObject({ model: "gpt-4o", same: true });
    expect(apply({ model: "anything" }, {}).model).toBe("anything");
    expect(apply('{"model":"gpt\\u002d4o"}', pin).model).toBe("gpt-4o"); // escaped value, decoded as the provider will
    expect(apply({ messages: [] }, {}).model).toBeUndefined();
  });

  it.each([
    ['{"model":"o3-pro"}', "model"],
    ['{"messages":[]}', "model"],
    ['{"model":"GPT-4O"}', "model"],
    ['{"model":"gpt-4o "}', "model"],
    ['{"\\u006dodel":"o3-pro"}', "model"],
    ['{"model":["gpt-4o"]}', "malformed"],
    ['{"model":null}', "malformed"],
    ['{"model":1}', "malformed"],
  ])("refuses %s", (body, kind) => {
    expect(refusal(body, pin).kind).toBe(kind);
  });

  it("never sees a second model: duplicate keys, escaped or not, fail the scan", () => {
    for (const body of ['{"model":"gpt-4o","model":"o3-pro"}', '{"model":"gpt-4o","\\u006dodel":"o3-pro"}', '{"mod\\u0065l":"gpt-4o","model":"o3-pro"}']) {
      expect(() => scanTopLevel(Buffer.from(body))).toThrow(JsonScanError);
    }
  });

  it("reads Gemini's model from the path and refuses a body model under a pin", () => {
    const gpin = { models: new Set(["gemini-2.5-flash"]) };
    expect(apply({ contents: [] }, gpin, { shape: "gemini", pathModel: "gemini-2.5-flash" }).model).toBe("gemini-2.5-flash");
    expect(refusal({ contents: [] }, gpin, { shape: "gemini", pathModel: "gemini-2.5-pro" }).kind).toBe("model");
    expect(refusal({ contents: [] }, gpin, { shape: "gemini" }).kind).toBe("model");
    expect(refusal({ model: "models/gemini-2.5-flash", contents: [] }, gpin, { shape: "gemini", pathModel: "gemini-2.5-flash" }).kind).toBe("model");
  });
});

describe("output cap", () => {
  const cap = { maxOutputTokens: 512 };

  it("inserts the right field per endpoint, keeping every other byte", () => {
    const cases: [Call, string | undefined][] = [
      [{ path: "/v1/chat/completions" }, "max_completion_tokens"],
      [{ path: "/openai/deployments/x/chat/completions?api-version=1" }, "max_completion_tokens"],
      [{ path: "/V1/Chat/Completions/" }, "max_completion_tokens"],
      [{ path: "/v1/chat/complet%69ons" }, "max_completion_tokens"],
      [{ path: "/v1/responses" }, "max_output_tokens"],
      [{ path: "/v1/completions" }, "max_tokens"],
      [{ path: "/v1/embeddings" }, undefined],
      [{ path: "/v1/images/generations" }, undefined],
      [{ shape: "anthropic", path: "/v1/messages" }, "max_tokens"],
      [{ shape: "anthropic", path: "/v1/complete" }, "max_tokens_to_sample"],
      [{ shape: "anthropic", path: "/v1/messages/count_tokens" }, undefined],
      [{ path: "/v1/chat/completions", capField: "max_tokens" }, "max_tokens"],
    ];
    const body = '{ "model" : "m",\n "messages":[{"role":"user","content":"hé"}] }\n';
    for (const [call, field] of cases) {
      const r = apply(body, cap, call);
      if (field === undefined) {
        expect(r.same, JSON.stringify(call)).toBe(true);
        continue;
      }
      expect(parsed(r.text), JSON.stringify(call)).toEqual({ ...parsed(body), [field]: 512 });
      const end = body.lastIndexOf("}");
      expect(r.text.slice(0, end)).toBe(body.slice(0, end));
      expect(r.text.endsWith(`,"${field}":512}\n`)).toBe(true);
    }
    expect(apply("{}", cap).text).toBe('{"max_completion_tokens":512}');
  });

  it("passes caps at or below the limit untouched", () => {
    for (const field of ["max_tokens", "max_completion_tokens", "max_output_tokens"]) {
      expect(apply({ [field]: 512 }, cap).same).toBe(true);
      expect(apply(`{"${field}":5.12e2}`, cap).same).toBe(true);
      expect(apply({ [field]: 1 }, cap).same).toBe(true);
    }
    expect(apply({ max_tokens: 100 }, cap, { shape: "anthropic" }).same).toBe(true);
    expect(apply({ model: "m" }, {}).same).toBe(true); // no cap, nothing inserted
  });

  it.each([
    ['{"max_tokens":513}', "output token limit above this token's cap"],
    ['{"max_completion_tokens":100000}', "output token limit above this token's cap"],
    ['{"max_output_tokens":512.5}', "output token limit above this token's cap"],
    ['{"max_tokens":1e999}', "output token limit above this token's cap"],
    ['{"max_tokens":100,"max_completion_tokens":4096}', "output token limit above this token's cap"],
    ['{"max\\u005ftokens":4096}', "output token limit above this token's cap"],
    ['{"max_tokens":"4096"}', "output token limit must be a number"],
    ['{"max_tokens":"100"}', "output token limit must be a number"],
    ['{"max_tokens":[1]}', "output token limit must be a number"],
    ['{"max_tokens":true}', "output token limit must be a number"],
  ])("refuses %s", (body, message) => {
    expect(refusal(body, cap)).toEqual({ kind: "max_tokens", message });
  });

  it("checks present caps even where it inserts none", () => {
    expect(refusal({ input: "x", max_tokens: 9999 }, cap, { path: "/v1/embeddings" }).kind).toBe("max_tokens");
    expect(refusal({ max_tokens_to_sample: 9999 }, cap, { shape: "anthropic", path: "/v1/complete" }).kind).toBe("max_tokens");
  });

  it("replaces a null cap with the cap instead of leaving it unlimited", () => {
    const r = apply('{"model":"m","max_tokens":null}', cap);
    expect(r.text).toBe('{"model":"m","max_tokens":512}');
    expect(parsed(apply('{"max_tokens":null,"max_completion_tokens":100}', cap).text)).toEqual({ max_tokens: 512, max_completion_tokens: 100 });
  });

  describe("Gemini generationConfig", () => {
    const g = (body: string | object, c: Call = {}) => apply(body, cap, { shape: "gemini", ...c });
    const gr = (body: string | object) => refusal(body, cap, { shape: "gemini" });

    it("inserts the cap in place", () => {
      expect(parsed(g({ contents: [] }).text)).toEqual({ contents: [], generationConfig: { maxOutputTokens: 512 } });
      expect(g('{"generationConfig":{"temperature":1}}').text).toBe('{"generationConfig":{"temperature":1,"maxOutputTokens":512}}');
      expect(g('{"generation_config":{ }}').text).toBe('{"generation_config":{ "maxOutputTokens":512}}');
      expect(g('{"generationConfig":null}').text).toBe('{"generationConfig":{"maxOutputTokens":512}}');
      expect(g('{"generationConfig":{"maxOutputTokens":100}}').same).toBe(true);
      expect(g('{"generationConfig":{"max_output_tokens":null}}').text).toBe('{"generationConfig":{"max_output_tokens":512}}');
      expect(g({ contents: [] }, { path: "/v1beta/models/x:countTokens" }).same).toBe(true);
      expect(g({ contents: [] }, { path: "/v1beta/models/x:streamGenerateContent?alt=sse" }).same).toBe(false);
    });

    it("refuses caps above the limit under either spelling, and ambiguous bodies", () => {
      expect(gr('{"generationConfig":{"maxOutputTokens":4096}}').kind).toBe("max_tokens");
      expect(gr('{"generation_config":{"max_output_tokens":4096}}').kind).toBe("max_tokens");
      expect(gr('{"generationConfig":{"maxOutputTokens":"4096"}}').kind).toBe("max_tokens");
      expect(gr('{"generationConfig":{"max\\u004futputTokens":4096}}').kind).toBe("max_tokens");
      expect(gr('{"generationConfig":{},"generation_config":{}}')).toEqual({ kind: "malformed", message: "a field is given under two names" });
      expect(gr('{"generationConfig":{"maxOutputTokens":1,"max_output_tokens":4096}}').kind).toBe("malformed");
      expect(gr('{"generationConfig":{"maxOutputTokens":1,"maxOutputTokens":4096}}')).toEqual({
        kind: "malformed",
        message: "duplicate key in a checked object",
      });
      expect(gr('{"generationConfig":"x"}')).toEqual({ kind: "malformed", message: "generationConfig must be an object" });
    });
  });
});

describe("n", () => {
  const capN = { maxN: 2 };
  it("allows n up to the cap, null and absent", () => {
    for (const body of ['{"n":2}', '{"n":1}', '{"n":null}', "{}", '{"best_of":2}']) expect(apply(body, capN).same).toBe(true);
    expect(apply('{"generationConfig":{"candidateCount":2}}', capN, { shape: "gemini" }).same).toBe(true);
  });
  it.each([
    ['{"n":3}', "n above this token's cap"],
    ['{"\\u006e":3}', "n above this token's cap"],
    ['{"best_of":5}', "n above this token's cap"],
    ['{"n":"3"}', "n must be a number"],
    ['{"n":"1"}', "n must be a number"],
  ])("refuses %s", (body, message) => {
    expect(refusal(body, capN)).toEqual({ kind: "n", message });
  });
  it("caps Gemini's candidateCount under either spelling", () => {
    expect(refusal('{"generationConfig":{"candidateCount":3}}', capN, { shape: "gemini" }).kind).toBe("n");
    expect(refusal('{"generation_config":{"candidate_count":3}}', capN, { shape: "gemini" }).kind).toBe("n");
  });
});

describe("tools", () => {
  const noTools = { toolsAllowed: false };
  it.each(["tools", "functions", "function_call", "tool_choice", "web_search_options", "audio", "prediction", "mcp_servers"])(
    "refuses %s for OpenAI and Anthropic shapes",
    (field) => {
      for (const shape of ["openai", "anthropic"] as const) {
        expect(refusal({ model: "m", [field]: field === "tool_choice" ? "auto" : [{}] }, noTools, { shape })).toEqual({
          kind: "tools",
          message: "tools not allowed for this token",
        });
      }
    },
  );
  it.each(["tools", "toolConfig", "tool_config"])("refuses %s for Gemini", (field) => {
    expect(refusal({ contents: [], [field]: {} }, noTools, { shape: "gemini" }).kind).toBe("tools");
  });
  it("sees escaped names, allows null and allows everything when tools are allowed", () => {
    expect(refusal('{"\\u0074ools":[{"type":"function"}]}', noTools).kind).toBe("tools");
    expect(refusal('{"tool\\u005fchoice":"required"}', noTools).kind).toBe("tools");
    expect(apply('{"tools":null,"tool_choice":null}', noTools).same).toBe(true);
    expect(apply({ tools: [{}], tool_choice: "auto", audio: {} }, { toolsAllowed: true }).same).toBe(true);
  });
});

describe("stream usage", () => {
  const force = { forceStreamUsage: true };
  it("inserts or fixes stream_options.include_usage on OpenAI chat and completions streams", () => {
    expect(apply('{"stream":true}', force).text).toBe('{"stream":true,"stream_options":{"include_usage":true}}');
    expect(apply('{"stream":true}', force, { path: "/v1/completions" }).text).toBe('{"stream":true,"stream_options":{"include_usage":true}}');
    expect(apply('{"stream":true,"stream_options":{}}', force).text).toBe('{"stream":true,"stream_options":{"include_usage":true}}');
    expect(apply('{"stream":true,"stream_options":{ "x" : 1 }}', force).text).toBe('{"stream":true,"stream_options":{ "x" : 1 ,"include_usage":true}}');
    expect(apply('{"stream":true,"stream_options":{"include_usage":false,"x":1}}', force).text).toBe(
      '{"stream":true,"stream_options":{"include_usage":true,"x":1}}',
    );
    expect(apply('{"stream":true,"stream_options":{"include_usage":null}}', force).text).toBe('{"stream":true,"stream_options":{"include_usage":true}}');
    expect(apply('{"stream":true,"stream_options":{"include_usage":"false"}}', force).text).toBe('{"stream":true,"stream_options":{"include_usage":true}}');
    expect(apply('{"stream":true,"stream_options":null}', force).text).toBe('{"stream":true,"stream_options":{"include_usage":true}}');
    expect(apply('{"stream":true,"stream_options":{"include_usage":true}}', force).same).toBe(true);
  });

  it("leaves other bodies alone", () => {
    for (const body of ['{"stream":false}', "{}", '{"stream":"true"}', '{"stream":null}']) expect(apply(body, force).same).toBe(true);
    expect(apply('{"stream":true}', {}).same).toBe(true);
    expect(apply('{"stream":true}', force, { shape: "anthropic" }).same).toBe(true);
    expect(apply('{"stream":true}', force, { path: "/v1/responses" }).same).toBe(true);
  });

  it("refuses a stream_options that is not an object, or has a duplicate inside", () => {
    expect(refusal('{"stream":true,"stream_options":"x"}', force)).toEqual({ kind: "malformed", message: "stream_options must be an object" });
    expect(refusal('{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}', force).kind).toBe("malformed");
  });

  it("combines a cap and stream_options in one splice", () => {
    const body = '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi \\"there\\""}]}';
    const r = apply(body, { forceStreamUsage: true, maxOutputTokens: 64, toolsAllowed: false, models: new Set(["gpt-4o"]) });
    expect(r.text).toBe(body.slice(0, -1) + ',"max_completion_tokens":64,"stream_options":{"include_usage":true}}');
    expect(r.model).toBe("gpt-4o");
    expect(apply("{}", { forceStreamUsage: true, maxOutputTokens: 64 }).text).toBe('{"max_completion_tokens":64}');
  });
});

describe("names a case-insensitive upstream would match", () => {
  it.each([
    '{"Model":"o3-pro"}',
    '{"model":"gpt-4o","MODEL":"o3-pro"}',
    '{"MAX_TOKENS":99999}',
    '{"max_to\\u212aens":99999}',
    '{"\\u017ftream":true}',
    '{"Tools":[{}]}',
    '{"Stream_Options":{"include_usage":false}}',
  ])("refuses %s", (body) => {
    expect(refusal(body, { models: new Set(["gpt-4o"]), maxOutputTokens: 10 })).toEqual({
      kind: "malformed",
      message: "a field name differs from a checked one only in case",
    });
  });
  it("refuses Gemini case variants and leaves unrelated names alone", () => {
    expect(refusal('{"GenerationConfig":{"maxOutputTokens":99999}}', {}, { shape: "gemini" }).kind).toBe("malformed");
    expect(refusal('{"toolconfig":{}}', {}, { shape: "gemini" }).kind).toBe("malformed");
    expect(apply('{"Messages":[],"TEMPERATURE":1,"ModelX":"y"}', {}).same).toBe(true);
    expect(refusal('{"Model":"x"}', {}, { shape: "anthropic" }).kind).toBe("malformed");
  });
});

describe("where the model lives (issue 18, finding 1)", () => {
  const run = (body: string, policy: Partial<RequestPolicy>, req: Partial<PolicyRequest> = {}) => {
    const raw = Buffer.from(body);
    return applyRequestPolicy(
      { shape: SHAPES.openai.policy, path: "/deployments/x/chat/completions", body: raw, scan: scanTopLevel(raw), ...req },
      { ...OPEN, ...policy },
    );
  };
  const refused = (body: string, policy: Partial<RequestPolicy>, req: Partial<PolicyRequest> = {}) => {
    try {
      run(body, policy, req);
    } catch (e) {
      if (e instanceof PolicyViolation) return e.kind;
      throw e;
    }
    return "admitted";
  };
  const pin = { models: new Set(["gpt-4o-mini"]) };

  it("the path wins: the model is the path's, a body model under a pin may only repeat it", () => {
    expect(run('{"model":"gpt-4o-mini"}', {}, { pathModel: "gpt-4-32k" }).model).toBe("gpt-4-32k");
    expect(refused('{"model":"gpt-4o-mini"}', pin, { pathModel: "gpt-4-32k" })).toBe("model");
    expect(refused('{"model":"gpt-4o-mini"}', pin, { pathModel: "gpt-4o-mini" })).toBe("admitted");
    expect(refused('{"model":null}', pin, { pathModel: "gpt-4o-mini" })).toBe("model");
    expect(refused('{"messages":[]}', pin, { pathModel: "gpt-4o-mini" })).toBe("admitted");
  });

  it("a body model the provider does not read names nothing", () => {
    expect(run('{"model":"gpt-4o-mini"}', {}, { modelInBody: false }).model).toBeUndefined();
    expect(refused('{"model":"gpt-4o-mini"}', pin, { modelInBody: false })).toBe("model");
  });

  it("fields that reroute are refused under a pin only, in their exact spelling", () => {
    const rerouting = ["models", "preset"];
    expect(refused('{"model":"gpt-4o-mini","models":["x"]}', pin, { rerouting })).toBe("model");
    expect(refused('{"model":"gpt-4o-mini","preset":"p"}', pin, { rerouting })).toBe("model");
    expect(refused('{"model":"gpt-4o-mini","models":null}', pin, { rerouting })).toBe("admitted");
    expect(refused('{"model":"gpt-4o-mini","models":["x"]}', {}, { rerouting })).toBe("admitted");
    expect(refused('{"model":"gpt-4o-mini","Models":["x"]}', pin, { rerouting })).toBe("malformed");
  });

  it("measures the output cap in force and the choices, for budget reservations", () => {
    const chat = { path: "/v1/chat/completions" };
    expect(run('{"max_tokens":50,"n":3}', { maxOutputTokens: 100, measure: true }, chat)).toMatchObject({ outputCap: 50, choices: 3 });
    expect(run('{"messages":[]}', { maxOutputTokens: 100, measure: true }, chat)).toMatchObject({ outputCap: 100, choices: 1 });
    expect(run('{"max_tokens":null}', { maxOutputTokens: 100, measure: true }, { path: "/v1/other" })).toMatchObject({ outputCap: 100 });
    expect(run('{"input":"x"}', { maxOutputTokens: 100, measure: true }, { path: "/v1/embeddings" }).outputCap).toBeUndefined();
    expect(run('{"max_tokens":50}', { maxOutputTokens: 100 }, chat).outputCap).toBeUndefined();
    const gemini = { shape: SHAPES.gemini.policy, path: "/v1beta/models/g:generateContent", pathModel: "g" };
    expect(run('{"generationConfig":{"maxOutputTokens":64,"candidateCount":2}}', { measure: true }, gemini)).toMatchObject({ outputCap: 64, choices: 2 });
    expect(run('{"contents":[]}', { maxOutputTokens: 99, measure: true }, gemini)).toMatchObject({ outputCap: 99, choices: 1 });
  });
});
