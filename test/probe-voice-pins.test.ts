/**
 * A model-pinned session's client messages are read for the model they name
 * (src/realtime/openai-realtime.ts, gemini-live.ts) by a byte search for `"model"`/`"setup"`
 * and a JSON parse. A message in another encoding (UTF-16, a UTF-8 byte-order mark) hides
 * the key from both, yet a lenient JSON reader on the provider's side (Python's json.loads on
 * bytes detects UTF-16 and the BOM) would read it: under a pin such a message is refused
 * (1008), never forwarded unread (DESIGN 3.4, as for HTTP bodies).
 */
import { describe, expect, it } from "vitest";
import { openSession, wsUrl } from "./support/realtime-client.js";
import { sleep } from "./support/wait.js";
import { useRealtimeRelay } from "./support/use-realtime-relay.js";

const REALTIME = "/api/openai/v1/realtime?model=gpt-realtime";
const LIVE = "/api/gemini/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

const { relay, mock } = useRealtimeRelay();

const update = JSON.stringify({ type: "session.update", session: { type: "realtime", model: "gpt-4o-realtime-preview" } });
const encodings: [string, Buffer][] = [
  ["UTF-16LE", Buffer.from(update, "utf16le")],
  ["UTF-16LE with its BOM", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(update, "utf16le")])],
  ["UTF-8 with a BOM", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(update)])],
];

describe("a pinned OpenAI session", () => {
  for (const [name, bytes] of encodings) {
    it(`a session.update in ${name} (binary frame) is refused with the error event and 1008; the provider gets none of it`, async () => {
      const { secret } = await relay.issue({ limits: { models: ["gpt-realtime"] } });
      const s = await openSession(wsUrl(relay.url, REALTIME), ["realtime", `openai-insecure-api-key.${secret}`]);
      await s.next("session.created");
      const seen = mock.sessions.at(-1)!;
      s.ws.send(bytes, { binary: true });
      const closed = await Promise.race([s.closed, sleep(2000).then(() => undefined)]);
      expect(closed?.code).toBe(1008);
      expect(s.events.find((e) => e.type === "error")?.error).toMatchObject({ code: "permission_denied" });
      expect(seen.received).toEqual([]);
    });
  }

  it("plain JSON messages, text or binary, still pass; an unpinned token's odd bytes are the provider's business", async () => {
    const { secret } = await relay.issue({ limits: { models: ["gpt-realtime"] } });
    const s = await openSession(wsUrl(relay.url, REALTIME), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    s.ws.send(Buffer.from(' \n{"type":"response.create"}'), { binary: true });
    await s.next("response.done");
    s.ws.close(1000);
    expect((await s.closed).code).toBe(1000);
  });
});

describe("a pinned Gemini Live session", () => {
  it("a setup in UTF-16 is refused with 1008 before the provider is dialled", async () => {
    const { secret } = await relay.issue({ provider: "gemini", limits: { models: ["gemini-live-ok"] } });
    const before = mock.sessions.length;
    const s = await openSession(wsUrl(relay.url, `${LIVE}?key=${secret}`));
    s.ws.send(Buffer.from(JSON.stringify({ setup: { model: "models/gemini-2.5-pro" } }), "utf16le"), { binary: true });
    const closed = await Promise.race([s.closed, sleep(2000).then(() => undefined)]);
    expect(closed?.code).toBe(1008);
    expect(mock.sessions.length).toBe(before);
  });
});
