import { describe, expect, it } from "vitest";
import { anthropicShape } from "../providers/shapes/anthropic.js";
import { geminiShape } from "../providers/shapes/gemini.js";
import { openaiShape } from "../providers/shapes/openai.js";
import { callBounds, namesRemoteInput, REMOTE_INPUT_TOKENS } from "./budget-reservations.js";

const json = (o: unknown) => Buffer.from(JSON.stringify(o));

describe("input the body does not hold (issue 24: a window passes its limit by at most one call's maximum)", () => {
  it("a plain chat body is estimated from its bytes", () => {
    const body = json({ model: "m", messages: [{ role: "user", content: "hi" }] });
    for (const shape of [openaiShape, anthropicShape, geminiShape]) expect(namesRemoteInput(body, shape.policy.remoteInput)).toBe(false);
    expect(callBounds({ json: true, bodyBytes: body.length, outputCap: 100, choices: 1 }).input).toBe(Math.ceil(body.length / 4));
  });

  it("stored responses, files, image URLs, cached contents and search tools reserve a whole context", () => {
    const cases: [typeof openaiShape, object][] = [
      [openaiShape, { model: "m", previous_response_id: "resp_1", input: "go on" }],
      [openaiShape, { model: "m", conversation: "conv_1" }],
      [openaiShape, { model: "m", input: [{ role: "user", content: [{ type: "input_file", file_id: "file-1" }] }] }],
      [openaiShape, { model: "m", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }] }],
      [openaiShape, { model: "m", tools: [{ type: "web_search_preview" }] }],
      [openaiShape, { model: "m", prompt: { id: "pmpt_1" } }],
      [geminiShape, { contents: [{ parts: [{ fileData: { fileUri: "gs://x" } }] }] }],
      [geminiShape, { contents: [], cachedContent: "cachedContents/abc" }],
      [geminiShape, { contents: [], tools: [{ googleSearch: {} }] }],
      [anthropicShape, { model: "m", messages: [{ role: "user", content: [{ type: "image", source: { type: "url", url: "https://x/y.png" } }] }] }],
      [anthropicShape, { model: "m", tools: [{ type: "web_search_20250305", name: "web_search" }] }],
    ];
    for (const [shape, body] of cases) expect(namesRemoteInput(json(body), shape.policy.remoteInput), JSON.stringify(body)).toBe(true);
    // As Python's json.dumps writes it, with spaces.
    expect(namesRemoteInput(Buffer.from('{"model": "m", "prompt": {"id": "pmpt_1"}}'), openaiShape.policy.remoteInput)).toBe(true);
    expect(callBounds({ json: true, bodyBytes: 100, outputCap: 10, choices: 1, remoteInput: true }).input).toBe(REMOTE_INPUT_TOKENS);
  });

  it("escaped keys are read as a parser reads them; escaped text alone is not remote input", () => {
    const keys = openaiShape.policy.remoteInput;
    expect(namesRemoteInput(Buffer.from('{"model":"m","previous\\u005fresponse_id":"r"}'), keys)).toBe(true);
    expect(namesRemoteInput(Buffer.from('{"model":"m","tools":[{"type":"web\\u005fsearch_preview"}]}'), keys)).toBe(true);
    expect(namesRemoteInput(Buffer.from('{"model":"m","messages":[{"role":"user","content":"\\u4f60\\u597d"}]}'), keys)).toBe(false);
  });
});
