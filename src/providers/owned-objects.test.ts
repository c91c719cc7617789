import { describe, expect, it } from "vitest";
import { createRuleOf, isObjectList, referencedObjects, usedObjectOf } from "./owned-objects.js";
import { OPENAI_OBJECTS } from "./shapes/openai.js";

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const NONE = Buffer.alloc(0);

describe("OpenAI's owned objects", () => {
  it("knows the calls that create one", () => {
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/responses", NONE)?.eventIdAt).toEqual(["response", "id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/openai/v1/files", NONE)?.idAt).toEqual(["id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/uploads/upload_1/complete", NONE)?.idAt).toEqual(["file", "id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "GET", "/v1/responses", NONE)).toBeUndefined();
    // Chat completions are stored only when asked.
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/chat/completions", json({ model: "m" }))).toBeUndefined();
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/chat/completions", json({ model: "m", store: true }))).toBeDefined();
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/chat/completions", Buffer.from('{"st\\u006fre":true}'))).toBeDefined();
  });

  it("knows the calls on one, and the collection actions that are not", () => {
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/resp_1")).toBe("resp_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/resp_1/input_items")).toBe("resp_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/RESPONSES/resp_1/")).toBe("resp_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/files/file-1/content")).toBe("file-1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/uploads/upload_1/parts")).toBe("upload_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/chat/completions/chatcmpl-1/messages")).toBe("chatcmpl-1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/compact")).toBeUndefined();
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/input_tokens")).toBeUndefined();
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses")).toBeUndefined();
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/chat/completions")).toBeUndefined();
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/files")).toBe(true);
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/chat/completions")).toBe(true);
    expect(isObjectList(OPENAI_OBJECTS, "POST", "/v1/files")).toBe(false);
  });

  it("reads the objects a body names: top-level response and conversation, files at any depth, escaped keys too", () => {
    const body = {
      model: "m",
      previous_response_id: "resp_1",
      conversation: { id: "conv_1" },
      input: [
        {
          role: "user",
          content: [
            { type: "input_file", file_id: "file-1" },
            { type: "input_image", file_id: "file-2" },
          ],
        },
      ],
    };
    expect(referencedObjects(OPENAI_OBJECTS, json(body)).sort()).toEqual(["conv_1", "file-1", "file-2", "resp_1"]);
    expect(referencedObjects(OPENAI_OBJECTS, Buffer.from('{"input":[{"file\\u005fid":"file-3"}]}'))).toEqual(["file-3"]);
    expect(referencedObjects(OPENAI_OBJECTS, json({ model: "m", previous_response_id: null, messages: [] }))).toEqual([]);
    expect(referencedObjects(OPENAI_OBJECTS, Buffer.from("not json file_id"))).toEqual([]);
  });
});
