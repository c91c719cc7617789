/**
 * The bytes of a Gemini resumable upload stream unread (src/relay/upload-body.ts) because they
 * go to a path that only stores them. A request that merely calls itself an upload
 * (`X-Goog-Upload-Command: upload`) on a path that runs a model must not pass unread: Google's
 * `/upload/` prefix reaches the same methods as the plain path for some of them, and the body
 * would skip the token's rules (tools, output cap, budget).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ config: { leaseMax: 1 } });
beforeEach(() => mock.reset());

describe("an upload command on a path that runs a model", () => {
  for (const path of ["/upload/v1beta/models/gemini-2.5-flash:generateContent", "/upload/v1beta/models/gemini-2.5-flash:streamGenerateContent"]) {
    it(`${path}: the body is read as the request it is (tools refused), not streamed unread`, async () => {
      const { secret } = await relay.issue({ provider: "gemini", limits: { toolsAllowed: false } });
      const res = await fetch(`${relay.url}/api/gemini${path}`, {
        method: "POST",
        headers: { "x-goog-api-key": secret, "content-type": "application/json", "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0" },
        body: JSON.stringify({ contents: [{ parts: [{ text: "hi" }] }], tools: [{ googleSearch: {} }] }),
      });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/tool/i);
      expect(mock.requests).toHaveLength(0);
    });
  }
});
