import { describe, expect, it } from "vitest";
import { callBounds, namesRemoteInput, REMOTE_INPUT_TOKENS } from "./budget-reservations.js";

const json = (o: unknown) => Buffer.from(JSON.stringify(o));

describe("input the body does not hold (issue 24: a window passes its limit by at most one call's maximum)", () => {
  it("a plain chat body is estimated from its bytes", () => {
    const body = json({ model: "m", messages: [{ role: "user", content: "hi" }] });
    expect(namesRemoteInput(body)).toBe(false);
    expect(callBounds({ json: true, bodyBytes: body.length, outputCap: 100, choices: 1 }).input).toBe(Math.ceil(body.length / 4));
  });

  it("stored responses, files, image URLs, cached contents and search tools reserve a whole context", () => {
    for (const body of [
      { model: "m", previous_response_id: "resp_1", input: "go on" },
      { model: "m", conversation: "conv_1" },
      { model: "m", input: [{ role: "user", content: [{ type: "input_file", file_id: "file-1" }] }] },
      { model: "m", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }] },
      { contents: [{ parts: [{ fileData: { fileUri: "gs://x" } }] }] },
      { contents: [], cachedContent: "cachedContents/abc" },
      { model: "m", tools: [{ type: "web_search_preview" }] },
      { model: "m", prompt: { id: "pmpt_1" } },
    ]) {
      expect(namesRemoteInput(json(body)), JSON.stringify(body)).toBe(true);
    }
    expect(callBounds({ json: true, bodyBytes: 100, outputCap: 10, choices: 1, remoteInput: true }).input).toBe(REMOTE_INPUT_TOKENS);
  });

  it("escaped keys are read as a parser reads them; escaped text alone is not remote input", () => {
    expect(namesRemoteInput(Buffer.from('{"model":"m","previous\\u005fresponse_id":"r"}'))).toBe(true);
    expect(namesRemoteInput(Buffer.from('{"model":"m","tools":[{"type":"web\\u005fsearch_preview"}]}'))).toBe(true);
    expect(namesRemoteInput(Buffer.from('{"model":"m","messages":[{"role":"user","content":"\\u4f60\\u597d"}]}'))).toBe(false);
  });
});
