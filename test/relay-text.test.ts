/**
 * RelayService with `body_text` and `text_chunks` (issue 26), from a typed Connect client over
 * connect-node: text in, whole-character text out, the old bytes form unchanged, a character
 * split between two upstream reads sent whole, and bytes that are not UTF-8 refused with
 * INVALID_ARGUMENT (after an `end`) instead of garbled text.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayService, type RelayResponse } from "../gen/relayapi/v1/relay_service_pb.js";
import { NOT_UTF8 } from "../src/services/text-chunks.js";
import { startMockProvider, type Behaviour, type MockProvider } from "./support/mock-provider.js";
import { startRelay, type TestRelay } from "./support/relay.js";

let mock: MockProvider;
let relay: TestRelay;
beforeAll(async () => {
  mock = await startMockProvider();
  relay = await startRelay({ mock });
});
afterEach(() => mock.behave(undefined));
afterAll(async () => {
  await relay?.close();
  await mock?.close();
});

type Part = RelayResponse["part"];
// Asks for the usage chunk itself, so the relay does not (src/relay/answer-filters.ts would then
// re-frame the answer on SSE frame boundaries) and the upstream reads reach the sink as they came.
const CHAT = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi €" }], stream: true, stream_options: { include_usage: true } });
const JSON_HEADER = [{ name: "content-type", value: "application/json" }];

/** Streams one Relay call; returns every message and the error the stream ended with, if any. */
async function relayCall(
  secret: string,
  req: Parameters<ReturnType<typeof client>["relay"]>[0],
  binary = true,
): Promise<{ parts: Part[]; error?: ConnectError }> {
  const parts: Part[] = [];
  try {
    for await (const m of client(binary).relay(req, { headers: { authorization: `Bearer ${secret}` } })) parts.push(m.part);
    return { parts };
  } catch (e) {
    return { parts, error: ConnectError.from(e) };
  }
}

function client(binary: boolean) {
  return createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1", useBinaryFormat: binary }));
}

const chunks = (parts: Part[]) => parts.flatMap((p) => (p.case === "chunk" ? [p.value] : []));
const endOf = (parts: Part[]) => parts.flatMap((p) => (p.case === "end" ? [p.value] : []));

/** The mock answers 200 with these bytes, one socket write per part, 60 ms apart (separate reads). */
function answerWith(parts: (string | Buffer)[]): void {
  const stream: Behaviour["stream"] = { contentType: "text/event-stream", parts, delayMs: 60 };
  mock.behave((rec) => (rec.path.endsWith("/chat/completions") ? { stream } : undefined));
}

describe("text in, text out", () => {
  it("body_text is sent as its UTF-8 bytes and text_chunks streams the answer as plain text", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 3n } });
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      bodyText: CHAT,
      textChunks: true,
    });
    expect(error).toBeUndefined();
    expect(mock.requests.at(-1)!.body.equals(Buffer.from(CHAT, "utf8"))).toBe(true);
    expect(parts[0]?.case).toBe("head");
    const cs = chunks(parts);
    expect(cs.length).toBeGreaterThanOrEqual(1);
    // Every piece is text; no piece carries bytes.
    expect(cs.every((c) => c.data.length === 0 && c.text !== "")).toBe(true);
    const text = cs.map((c) => c.text).join("");
    expect(text).toContain('"content":"tok0 "');
    expect(text).toContain("data: [DONE]");
    expect(endOf(parts)).toEqual([expect.objectContaining({ outcome: Outcome.COMPLETE, callsLeft: 2n, error: "" })]);
  });

  it("without text_chunks nothing changes: body bytes in, data bytes out", async () => {
    const { secret } = await relay.issue();
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      body: new TextEncoder().encode(CHAT),
    });
    expect(error).toBeUndefined();
    const cs = chunks(parts);
    expect(cs.every((c) => c.text === "" && c.data.length > 0)).toBe(true);
    expect(Buffer.concat(cs.map((c) => c.data)).toString("utf8")).toContain("tok0");
  });

  it("body_text with the bytes form out, and body with text out, mix freely", async () => {
    const { secret } = await relay.issue();
    const a = await relayCall(secret, { provider: "openai", path: "/v1/chat/completions", headers: JSON_HEADER, bodyText: CHAT });
    expect(Buffer.concat(chunks(a.parts).map((c) => c.data)).toString()).toContain("tok0");
    const b = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      body: new TextEncoder().encode(CHAT),
      textChunks: true,
    });
    expect(
      chunks(b.parts)
        .map((c) => c.text)
        .join(""),
    ).toContain("tok0");
  });

  it("body and body_text together are refused before the call is counted", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 1n } });
    const before = mock.requests.length;
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      body: new TextEncoder().encode(CHAT),
      bodyText: CHAT,
    });
    expect(parts).toEqual([]);
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toBe("set body or body_text, not both");
    expect(mock.requests.length).toBe(before);
    // The one call the token has is still there.
    const ok = await relayCall(secret, { provider: "openai", path: "/v1/chat/completions", headers: JSON_HEADER, bodyText: CHAT, textChunks: true });
    expect(endOf(ok.parts)[0]?.callsLeft).toBe(0n);
  });

  it("a lone surrogate in body_text (JSON allows \\ud800) is refused, not sent as U+FFFD", async () => {
    const { secret } = await relay.issue();
    const before = mock.requests.length;
    const { error } = await relayCall(secret, { provider: "openai", path: "/v1/chat/completions", bodyText: '{"model":"gpt-mock","x":"\ud800"}' }, false);
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(mock.requests.length).toBe(before);
  });
});

it("the README's Connect-web snippet (global fetch, JSON) reads the chat as SSE text", async () => {
  const { secret: token } = await relay.issue({ limits: { maxCalls: 2n } });
  const relayClient = createClient(RelayService, createWebTransport({ baseUrl: relay.url }));
  const bodyText = JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "Hello" }] });
  let sse = "";
  let end: Extract<Part, { case: "end" }>["value"] | undefined;
  for await (const m of relayClient.relay(
    { provider: "openai", path: "/v1/chat/completions", headers: [{ name: "content-type", value: "application/json" }], bodyText, textChunks: true },
    { headers: { authorization: `Bearer ${token}` } },
  )) {
    if (m.part.case === "chunk") sse += m.part.value.text;
    if (m.part.case === "end") end = m.part.value;
  }
  expect(sse).toMatch(/^data: \{.*"content":"tok0 "/);
  expect(sse.trimEnd().endsWith("data: [DONE]")).toBe(true);
  expect(end).toMatchObject({ outcome: Outcome.COMPLETE, callsLeft: 1n });
});

it("body_text that is not UTF-8 on the binary wire is refused (invalid_argument) before the call is counted", async () => {
  const { secret } = await relay.issue();
  const before = mock.requests.length;
  const field = (no: number, bytes: number[]) => [(no << 3) | 2, bytes.length, ...bytes];
  const ascii = (s: string) => [...Buffer.from(s)];
  // provider = 1, path = 3, body_text = 7 holding 0xff: what no protobuf library would encode.
  const message = Buffer.from([...field(1, ascii("openai")), ...field(3, ascii("/v1/chat/completions")), ...field(7, [0x7b, 0xff, 0x7d])]);
  const envelope = Buffer.alloc(5 + message.length);
  envelope.writeUInt32BE(message.length, 1);
  message.copy(envelope, 5);
  const res = await fetch(`${relay.url}/relayapi.v1.RelayService/Relay`, {
    method: "POST",
    headers: { "content-type": "application/connect+proto", "connect-protocol-version": "1", authorization: `Bearer ${secret}` },
    body: envelope,
  });
  const body = Buffer.from(await res.arrayBuffer());
  // One end-stream frame (flag 0x02) with the error, and no message before it.
  expect(body[0]).toBe(0x02);
  expect(JSON.parse(body.subarray(5).toString()).error.code).toBe("invalid_argument");
  expect(mock.requests.length).toBe(before);
});

describe("whole characters", () => {
  // "€" is E2 82 AC: the first upstream read ends after E2 82, the second starts with AC.
  const EURO = Buffer.from("€", "utf8");
  const FRAME = 'data: {"choices":[{"delta":{"content":"5 €"}}]}\n\n';
  const cut = FRAME.indexOf("€");
  const split = [
    Buffer.concat([Buffer.from(FRAME.slice(0, cut)), EURO.subarray(0, 2)]),
    Buffer.concat([EURO.subarray(2), Buffer.from(FRAME.slice(cut + 1))]),
    "data: [DONE]\n\n",
  ];

  it("the relay really gets the character in two reads (bytes form shows the cut)", async () => {
    answerWith(split);
    const { secret } = await relay.issue();
    const { parts } = await relayCall(secret, { provider: "openai", path: "/v1/chat/completions", headers: JSON_HEADER, bodyText: CHAT });
    const data = chunks(parts).map((c) => Buffer.from(c.data));
    expect(data.some((d) => d.subarray(-2).equals(EURO.subarray(0, 2)))).toBe(true);
  });

  it("a UTF-8 character split across two upstream chunks arrives whole in the text chunks", async () => {
    answerWith(split);
    const { secret } = await relay.issue();
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      bodyText: CHAT,
      textChunks: true,
    });
    expect(error).toBeUndefined();
    const texts = chunks(parts).map((c) => c.text);
    expect(texts.join("")).toBe(FRAME + "data: [DONE]\n\n");
    expect(texts.some((t) => t.includes("€"))).toBe(true);
    for (const t of texts) expect(t).not.toContain("\uFFFD");
    expect(endOf(parts)[0]?.outcome).toBe(Outcome.COMPLETE);
  });
});

describe("not UTF-8", () => {
  const BAD = ['data: {"ok":1}\n\n', Buffer.from([0x64, 0x61, 0xff, 0x0a]), "data: after\n\n"];

  it("bytes that are not UTF-8 end the stream with an end, then INVALID_ARGUMENT; nothing after them is sent", async () => {
    answerWith(BAD);
    const { secret } = await relay.issue({ limits: { maxCalls: 5n } });
    const calls = relay.calls.length;
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      bodyText: CHAT,
      textChunks: true,
    });
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toBe(NOT_UTF8);
    const text = chunks(parts)
      .map((c) => c.text)
      .join("");
    expect(text).toBe('data: {"ok":1}\n\n');
    expect(text).not.toContain("\uFFFD");
    // The call reached the provider: counted, and recorded as cut short.
    expect(endOf(parts)).toEqual([expect.objectContaining({ outcome: Outcome.TRUNCATED, callsLeft: 4n, error: NOT_UTF8 })]);
    await expect.poll(() => relay.calls.length).toBe(calls + 1);
    expect(relay.calls.at(-1)?.outcome).toBe(Outcome.TRUNCATED);
  });

  it("the same answer without text_chunks passes as bytes, untouched", async () => {
    answerWith(BAD);
    const { secret } = await relay.issue();
    const { parts, error } = await relayCall(secret, { provider: "openai", path: "/v1/chat/completions", headers: JSON_HEADER, bodyText: CHAT });
    expect(error).toBeUndefined();
    expect(Buffer.concat(chunks(parts).map((c) => c.data)).equals(Buffer.concat(BAD.map((p) => Buffer.from(p))))).toBe(true);
  });

  it("an answer that ends inside a character is refused too", async () => {
    answerWith(["data: x\n\n", Buffer.from([0xe2, 0x82])]);
    const { secret } = await relay.issue();
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      bodyText: CHAT,
      textChunks: true,
    });
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(
      chunks(parts)
        .map((c) => c.text)
        .join(""),
    ).toBe("data: x\n\n");
    expect(endOf(parts)[0]?.error).toBe(NOT_UTF8);
  });

  it("on a budgeted token (the engine drains for usage) the refusal is the same", async () => {
    answerWith(BAD);
    const { secret } = await relay.issue({ limits: { budgetTokens: 100_000n } });
    const { parts, error } = await relayCall(secret, {
      provider: "openai",
      path: "/v1/chat/completions",
      headers: JSON_HEADER,
      bodyText: CHAT,
      textChunks: true,
    });
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(
      chunks(parts)
        .map((c) => c.text)
        .join(""),
    ).toBe('data: {"ok":1}\n\n');
    expect(endOf(parts)[0]).toMatchObject({ outcome: Outcome.TRUNCATED, error: NOT_UTF8 });
  });
});
