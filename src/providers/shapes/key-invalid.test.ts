/**
 * Each shape's "invalid key" verdict (DESIGN 8): true only for the provider's own structured
 * marker, never for the same words in a message (which may echo the client's input).
 */
import { describe, expect, it } from "vitest";
import { anthropicShape, geminiShape, openaiShape } from "./index.js";

describe("keyInvalid", () => {
  it("OpenAI: error.code invalid_api_key", () => {
    expect(openaiShape.keyInvalid!({ error: { message: "Incorrect API key provided", type: "invalid_request_error", code: "invalid_api_key" } })).toBe(true);
    expect(openaiShape.keyInvalid!({ error: { message: "invalid_api_key", type: "invalid_request_error", code: "model_not_found" } })).toBe(false);
    expect(openaiShape.keyInvalid!({ error: { code: null } })).toBe(false);
  });

  it("Anthropic: an error of type authentication_error", () => {
    expect(anthropicShape.keyInvalid!({ type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } })).toBe(true);
    expect(anthropicShape.keyInvalid!({ type: "error", error: { type: "permission_error", message: "authentication_error" } })).toBe(false);
  });

  it("Gemini: a google.rpc.ErrorInfo with reason API_KEY_INVALID", () => {
    const info = { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com" };
    expect(geminiShape.keyInvalid!({ error: { code: 400, message: "API key not valid.", status: "INVALID_ARGUMENT", details: [info] } })).toBe(true);
    expect(geminiShape.keyInvalid!({ error: { code: 400, message: "API_KEY_INVALID", status: "INVALID_ARGUMENT", details: [] } })).toBe(false);
  });

  it("anything else is no verdict", () => {
    for (const shape of [openaiShape, anthropicShape, geminiShape]) {
      for (const body of [null, "invalid_api_key", [], 42, {}, { error: "API_KEY_INVALID" }]) expect(shape.keyInvalid!(body)).toBe(false);
    }
  });
});
