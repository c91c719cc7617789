import { describe, expect, it } from "vitest";
import { encodeGrpcMessage, respecGrpcMessage } from "./grpc-message.js";

describe("grpc-message encoding", () => {
  it("encodes only bytes outside 0x20-0x7E and %, readable by decodeURI and decodeURIComponent", () => {
    const raw = "invalid, expired: a/b?c=d&e+f;g@h#i$ 100% é\n";
    const encoded = encodeGrpcMessage(raw);
    expect(encoded).toBe("invalid, expired: a/b?c=d&e+f;g@h#i$ 100%25 %C3%A9%0A");
    expect(decodeURI(encoded)).toBe(raw);
    expect(decodeURIComponent(encoded)).toBe(raw);
  });

  it("re-encodes connect-es's encodeURIComponent form, and leaves what it cannot decode", () => {
    const h = new Headers({ "grpc-message": encodeURIComponent("set body or body_text, not both") });
    respecGrpcMessage(h);
    expect(h.get("grpc-message")).toBe("set body or body_text, not both");
    const bad = new Headers({ "grpc-message": "%E0%A4%A" });
    respecGrpcMessage(bad);
    expect(bad.get("grpc-message")).toBe("%E0%A4%A");
  });
});
