/**
 * Proof of possession end to end (RFC 9449, issue 9): a token bound to a client key is refused
 * without a valid DPoP proof on the HTTP layer and on RelayService; the official openai client
 * with the SDK's dpopFetch completes chats, streaming and not, including getting a server
 * nonce and a nonce rotating mid-run; replayed and mis-bound proofs are refused; a sealed token
 * bound with the SDK's `bindKey` (a public JWK). And POST /v1/leaked-tokens kills a token.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import OpenAI from "openai";
import { beforeAll, expect, it } from "vitest";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { exportJWK } from "jose";
import { createDpopProof, dpopFetch, generateDpopKeyPair, jwkThumbprint, type DpopKeyPair } from "../src/sdk/dpop-fetch.js";
import { sealToken } from "../src/sdk/seal-token.js";
import { startRelay, UPSTREAM_KEY } from "./support/relay.js";
import { createIssuer } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ config: { dpopNonces: true } });
let keys: DpopKeyPair;
let bound: string;

beforeAll(async () => {
  keys = await generateDpopKeyPair();
  bound = (await relay.issue({ limits: { bindJkt: await jwkThumbprint(keys.publicKey) } })).secret;
});

const chatUrl = () => `${relay.url}/api/openai/v1/chat/completions`;
const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });

it("refuses a bound token copied without its key, on HTTP and on RelayService", async () => {
  const res = await fetch(chatUrl(), { method: "POST", headers: { authorization: `Bearer ${bound}` }, body });
  expect(res.status).toBe(401);
  expect(res.headers.get("www-authenticate")).toMatch(/^DPoP error="invalid_dpop_proof"/);
  expect(res.headers.get("dpop-nonce")).toBeTruthy();
  const client = createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  const stream = client.relay(
    { provider: "openai", path: "/v1/chat/completions", body: new TextEncoder().encode(body) },
    { headers: { authorization: `Bearer ${bound}` } },
  );
  await expect(
    (async () => {
      for await (const _ of stream) void _;
    })(),
  ).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unauthenticated);
  // A browser on RelayService must be able to read the nonce it is told to use.
  const rpc = await fetch(`${relay.url}/relayapi.v1.RelayService/Relay`, {
    method: "POST",
    headers: { origin: "https://app.example", "content-type": "application/connect+json", authorization: `Bearer ${bound}` },
    body: new Uint8Array(5),
  });
  expect(rpc.headers.get("access-control-expose-headers")).toMatch(/dpop-nonce.*www-authenticate/);
  await rpc.arrayBuffer();
});

it("lets the openai client with dpopFetch chat, streaming and not, fetching the server nonce itself", async () => {
  const client = new OpenAI({ apiKey: bound, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, fetch: dpopFetch(keys) });
  const res = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] });
  expect(res.choices[0]?.message.content).toContain("tok0");
  const stream = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  expect(text).toContain("tok4");
});

it("follows a nonce that rotates mid-run: the stale nonce gets one 401 and the retry goes through", async () => {
  const quick = await startRelay({ mock, config: { dpopNonces: true, dpopNonceSeconds: 1 } });
  try {
    const token = (await quick.issue({ limits: { bindJkt: await jwkThumbprint(keys.publicKey) } })).secret;
    const seen: { status: number; nonce: string | null }[] = [];
    const recording = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const res = await fetch(input, init);
      seen.push({ status: res.status, nonce: res.headers.get("dpop-nonce") });
      return res;
    };
    const client = new OpenAI({ apiKey: token, baseURL: `${quick.url}/api/openai/v1`, maxRetries: 0, fetch: dpopFetch(keys, recording) });
    const ask = () => client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] });
    expect((await ask()).choices[0]?.message.content).toContain("tok0");
    expect(seen.map((s) => s.status)).toEqual([401, 200]);
    const first = seen[0]!.nonce;
    // Two whole buckets later the client's nonce is neither current nor previous.
    await new Promise((r) => setTimeout(r, 2_100));
    seen.length = 0;
    const stream = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toContain("tok4");
    expect(seen.map((s) => s.status)).toEqual([401, 200]);
    expect(seen[0]!.nonce).toBeTruthy();
    expect(seen[0]!.nonce).not.toBe(first);
    expect((await ask()).choices[0]?.message.content).toContain("tok0"); // the fresh nonce is kept
    expect(seen.map((s) => s.status)).toEqual([401, 200, 200]);
  } finally {
    await quick.close();
  }
});

it("seals a token bound to a public JWK (the SDK's bindKey) that only its key can spend", async () => {
  const issuer = await createIssuer(relay, "dpop-app");
  const publicJwk = await exportJWK(keys.publicKey);
  const token = await sealToken({ prv: "openai", key: UPSTREAM_KEY, max: 5, bindKey: publicJwk }, issuer.issuerKey);
  const chat = (f?: typeof fetch) =>
    new OpenAI({ apiKey: token, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, fetch: f }).chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
    });
  await expect(chat()).rejects.toMatchObject({ status: 401 });
  expect((await chat(dpopFetch(keys))).choices[0]?.message.content).toContain("tok0");
  const stranger = await generateDpopKeyPair();
  await expect(chat(dpopFetch(stranger))).rejects.toMatchObject({ status: 401 });
  const withPrivate = await exportJWK((await generateDpopKeyPair(true)).privateKey);
  await expect(sealToken({ prv: "openai", key: UPSTREAM_KEY, bindKey: withPrivate }, issuer.issuerKey)).rejects.toThrow(/bindKey must be a public/);
  await expect(sealToken({ prv: "openai", key: UPSTREAM_KEY, bindKey: { kty: "RSA", n: "x", e: "AQAB" } }, issuer.issuerKey)).rejects.toThrow(/bindKey/);
});

it("refuses replayed, mis-bound and foreign-key proofs", async () => {
  const nonceRes = await fetch(chatUrl(), { method: "POST", headers: { authorization: `Bearer ${bound}` }, body });
  const nonce = nonceRes.headers.get("dpop-nonce")!;
  const send = (proof: string, url = chatUrl()) =>
    fetch(url, { method: "POST", headers: { authorization: `Bearer ${bound}`, dpop: proof }, body }).then((r) => r.status);
  const good = await createDpopProof(keys, "POST", chatUrl(), bound, nonce);
  expect(await send(good)).toBe(200);
  expect(await send(good)).toBe(401); // replay
  expect(await send(await createDpopProof(keys, "GET", chatUrl(), bound, nonce))).toBe(401); // htm
  expect(await send(await createDpopProof(keys, "POST", `${relay.url}/api/openai/v1/models`, bound, nonce))).toBe(401); // htu
  expect(await send(await createDpopProof(keys, "POST", chatUrl(), "another-token", nonce))).toBe(401); // ath
  const stranger = await generateDpopKeyPair();
  expect(await send(await createDpopProof(stranger, "POST", chatUrl(), bound, nonce))).toBe(401); // jkt
  expect(await send(await createDpopProof(keys, "POST", chatUrl(), bound, "stale-nonce"))).toBe(401);
});

it("POST /v1/leaked-tokens revokes a posted token at once, without echoing it", async () => {
  const { secret, id } = await relay.issue();
  expect((await fetch(chatUrl(), { method: "POST", headers: { authorization: `Bearer ${secret}` }, body })).status).toBe(200);
  const res = await fetch(`${relay.url}/v1/leaked-tokens`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify([{ token: secret, type: "relayapi_token", url: "https://example.com/leak" }]),
  });
  expect(res.status).toBe(200);
  const text = await res.text();
  expect(text).not.toContain(secret);
  expect(JSON.parse(text)).toMatchObject({ revoked: 1, results: [{ label: "true_positive" }] });
  expect((await fetch(chatUrl(), { method: "POST", headers: { authorization: `Bearer ${secret}` }, body })).status).toBe(401);
  expect((await relay.tokens.getToken({ id })).token?.revokedAt).toBeDefined();
  const again = await fetch(`${relay.url}/v1/leaked-tokens`, { method: "POST", body: secret });
  expect(await again.json()).toMatchObject({ revoked: 0, results: [{ label: "false_positive" }] });
  expect((await fetch(`${relay.url}/v1/leaked-tokens`, { method: "POST", body: "{" })).status).toBe(400);
});
