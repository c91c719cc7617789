/**
 * SSRF and header injection, beyond test/http-hygiene.test.ts (which covers dot segments,
 * encoded slashes, `@` in the path, and hop-by-hop headers on the HTTP layer): a "canary" server
 * that is no configured provider must never see a connection, whatever the client tries —
 * absolute-form and authority-form request targets, Host and forwarding headers naming it, CRLF
 * in header values, provider ids that are not registered, RelayService paths, headers and
 * queries, tokens naming unknown providers, and a provider redirecting to it. Hop-by-hop and
 * host headers sent through RelayService never reach the provider either.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createServer, type Server } from "node:http";
import { connect as h2connect } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AdminService, ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { EncryptJWT } from "jose";
import { RawClient } from "./support/fuzz.js";
import { chat, createIssuer, expectFixed401, seconds } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay();
let canary: Server;
let canaryHost: string;
/** Every TCP connection the canary accepted, for any reason. */
let canaryConnections = 0;
let redirector: Server;
let secret: string;

beforeAll(async () => {
  canary = createServer((_req, res) => res.end("canary"));
  canary.on("connection", () => canaryConnections++);
  await new Promise<void>((r) => canary.listen(0, "127.0.0.1", r));
  canaryHost = `127.0.0.1:${(canary.address() as AddressInfo).port}`;
  redirector = createServer((_req, res) => {
    res.writeHead(307, { location: `http://${canaryHost}/stolen`, "content-type": "application/json" });
    res.end('{"error":{"message":"moved","type":"x","code":"moved"}}');
  });
  await new Promise<void>((r) => redirector.listen(0, "127.0.0.1", r));
  await relay.admin.upsertProvider({
    provider: {
      id: "redirecting",
      baseUrl: `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`,
      authStyle: AuthStyle.BEARER,
      shape: ApiShape.OPENAI,
    },
  });
  secret = (await relay.issue()).secret;
});
afterAll(async () => {
  await new Promise((r) => canary?.close(r));
  await new Promise((r) => redirector?.close(r));
});
beforeEach(() => mock.reset());

const CHAT = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });

describe("HTTP/1.1 request targets and headers never reach the canary", () => {
  const targets = () => [
    `http://${canaryHost}/`,
    `http://${canaryHost}/api/openai/v1/chat/completions`,
    `http://${new URL(relay.url).host}/api/openai/v1/chat/completions`,
    `//${canaryHost}/api/openai/v1/chat/completions`,
    `/api/openai@${canaryHost}/v1/chat/completions`,
    `/api/${canaryHost}/v1/chat/completions`,
    `/api/canary/v1/chat/completions`,
    `/api/openai/v1/%252e%252e/%252e%252e/x`,
    `/api/openai/v1/\uff0f\uff0f${canaryHost}/x`,
    `/api/openai/v1/..%c0%af..%c0%afx`,
    `/api/openai/v1/chat/completions?url=http://${canaryHost}/&redirect=//${canaryHost}`,
    `/api/openai/v1/chat/completions#@${canaryHost}`,
  ];

  it("absolute-form, authority-looking and unregistered-provider targets: a 4xx or forwarded to the provider only", async () => {
    const client = RawClient.for(relay.url);
    for (const target of targets()) {
      const res = await client.request("POST", target, { authorization: `Bearer ${secret}`, "content-type": "application/json" }, CHAT);
      expect(res.status, target).toBeLessThan(500);
      if (res.status < 300) for (const r of mock.requests) expect(r.headers.host, target).toBe(new URL(mock.url).host);
    }
    client.close();
    expect(canaryConnections).toBe(0);
  });

  it("CONNECT (authority-form) is not a tunnel", async () => {
    const client = RawClient.for(relay.url);
    await expect(client.send(`CONNECT ${canaryHost} HTTP/1.1\r\nHost: ${canaryHost}\r\n\r\n`, undefined, "CONNECT")).rejects.toThrow(/closed/);
    client.close();
    expect(canaryConnections).toBe(0);
  });

  it("Host, forwarding headers and CRLF-split values naming the canary change nothing", async () => {
    const attempts: Record<string, string>[] = [
      { host: canaryHost },
      { "x-forwarded-host": canaryHost, forwarded: `host=${canaryHost}`, "x-forwarded-proto": "http", "x-original-url": `http://${canaryHost}/` },
      { "x-test": `a\r\nHost: ${canaryHost}` },
      { "x-test": `a\r\n\r\nGET http://${canaryHost}/ HTTP/1.1\r\nHost: ${canaryHost}` },
      { "x-test": `a\nHost: ${canaryHost}` },
    ];
    for (const headers of attempts) {
      const client = RawClient.for(relay.url);
      const res = await client
        .request("POST", "/api/openai/v1/chat/completions", { authorization: `Bearer ${secret}`, "content-type": "application/json", ...headers }, CHAT)
        .catch(() => undefined);
      client.close();
      if (res) expect(res.status, JSON.stringify(headers)).toBeLessThan(500);
    }
    for (const r of mock.requests) {
      expect(r.headers.host).toBe(new URL(mock.url).host);
      for (const h of ["x-forwarded-host", "forwarded", "x-forwarded-proto"]) expect(r.headers[h], h).toBeUndefined();
    }
    expect(canaryConnections).toBe(0);
  });

  it("h2c: an absolute :path and an :authority naming the canary", async () => {
    const session = h2connect(relay.url);
    session.on("error", () => {});
    for (const headers of [{ ":path": `http://${canaryHost}/x` }, { ":path": "/api/openai/v1/chat/completions", ":authority": canaryHost }]) {
      const status = await new Promise<number | string>((resolve) => {
        const s = session.request({ ":method": "POST", authorization: `Bearer ${secret}`, "content-type": "application/json", ...headers });
        s.on("response", (h) => resolve(Number(h[":status"])));
        s.on("error", (e: Error) => resolve(e.message));
        s.resume();
        s.end(CHAT);
      });
      expect(typeof status === "string" || status < 500, String(status)).toBe(true);
    }
    session.close();
    for (const r of mock.requests) expect(r.headers.host).toBe(new URL(mock.url).host);
    expect(canaryConnections).toBe(0);
  });

  it("a provider's redirect to the canary is passed to the client, never followed", async () => {
    const { secret: s } = await relay.issue({ provider: "redirecting" });
    const res = await fetch(`${relay.url}/api/redirecting/v1/chat/completions`, {
      method: "POST",
      redirect: "manual",
      headers: { authorization: `Bearer ${s}` },
      body: CHAT,
    });
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe(`http://${canaryHost}/stolen`);
    expect(canaryConnections).toBe(0);
  });
});

describe("RelayService and tokens never name a host", () => {
  const rpc = () => createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  async function relayCall(req: Parameters<ReturnType<typeof rpc>["relay"]>[0]): Promise<ConnectError | undefined> {
    try {
      for await (const _ of rpc().relay(req, { headers: { authorization: `Bearer ${secret}` } })) void _;
    } catch (e) {
      return ConnectError.from(e);
    }
  }

  it.each([
    ["provider: an URL", (h: string) => ({ provider: `http://${h}`, path: "/v1/chat/completions" }), Code.NotFound],
    ["provider: unregistered id", (_h: string) => ({ provider: "canary", path: "/v1/chat/completions" }), Code.NotFound],
    ["path: absolute URL", (h: string) => ({ provider: "openai", path: `http://${h}/x` }), Code.InvalidArgument],
    ["path: network-path reference", (h: string) => ({ provider: "openai", path: `//${h}/x` }), Code.InvalidArgument],
    ["path: userinfo", (h: string) => ({ provider: "openai", path: `@${h}/x` }), Code.InvalidArgument],
    ["path: backslashes", (h: string) => ({ provider: "openai", path: `/\\\\${h}\\x` }), Code.InvalidArgument],
    ["path: a tab inside a dot segment", (_h: string) => ({ provider: "openai", path: "/v1/.\t./.\t./x" }), Code.InvalidArgument],
    [
      "header: CRLF in a value",
      (h: string) => ({ provider: "openai", path: "/v1/chat/completions", headers: [{ name: "x-a", value: `1\r\nHost: ${h}` }] }),
      Code.InvalidArgument,
    ],
    [
      "header: CRLF in a name",
      (h: string) => ({ provider: "openai", path: "/v1/chat/completions", headers: [{ name: `x-a\r\nhost`, value: h }] }),
      Code.InvalidArgument,
    ],
    [
      "header: NUL in a value",
      (_h: string) => ({ provider: "openai", path: "/v1/chat/completions", headers: [{ name: "x-a", value: "a\0b" }] }),
      Code.InvalidArgument,
    ],
  ] as const)("%s -> code %s, nothing sent anywhere", async (_n, req, code) => {
    const err = await relayCall(req(canaryHost));
    expect(err?.code).toBe(code);
    expect(mock.requests).toHaveLength(0);
    expect(canaryConnections).toBe(0);
  });

  it("host, hop-by-hop and carrier headers in a RelayRequest never reach the provider", async () => {
    const headers = [
      ["host", canaryHost],
      ["connection", "x-hop"],
      ["x-hop", "1"],
      ["keep-alive", "timeout=1"],
      ["transfer-encoding", "chunked"],
      ["te", "trailers"],
      ["upgrade", "websocket"],
      ["proxy-authorization", "Basic eA=="],
      ["trailer", "x"],
      ["x-forwarded-host", canaryHost],
      ["authorization", "Bearer x"],
      ["x-api-key", "x"],
      ["cookie", "a=b"],
      ["content-length", "999"],
      ["expect", "100-continue"],
      ["x-passes", "yes"],
      ["content-type", "application/json"],
    ].map(([name, value]) => ({ name: name!, value: value! }));
    expect(
      await relayCall({ provider: "openai", path: "/v1/chat/completions", query: `key=${secret}&keep=1`, headers, body: new TextEncoder().encode(CHAT) }),
    ).toBeUndefined();
    const rec = mock.requests[0]!;
    expect(rec.headers.host).toBe(new URL(mock.url).host);
    for (const [name] of headers.map((h) => [h.name])) {
      if (["host", "x-passes", "content-type", "authorization", "content-length"].includes(name!)) continue;
      if (name === "connection") {
        expect(rec.headers.connection, "only the relay's own client's connection header").toBe("keep-alive");
        continue;
      }
      expect(rec.headers[name!], name).toBeUndefined();
    }
    expect(rec.headers.authorization).not.toBe("Bearer x");
    expect(rec.headers["content-length"]).toBe(String(CHAT.length));
    expect(rec.headers["x-passes"]).toBe("yes");
    expect(rec.query.has("key")).toBe(false);
    expect(rec.query.get("keep")).toBe("1");
    expect(canaryConnections).toBe(0);
  });

  it("a sealed token naming an unregistered provider is the fixed 401; an issued one cannot be made", async () => {
    const issuer = await createIssuer(relay, "ssrf-app");
    for (const prv of ["canary", canaryHost, `http://${canaryHost}`]) {
      // Sealed with jose directly: the SDK itself refuses such a `prv` at mint time.
      const raw = await sealRaw(issuer, { prv, key: "sk-x-1234567890", jti: `ssrf-raw-${prv.length}`, exp: seconds(600) });
      expectFixed401(await chat(relay, raw), prv);
      await expect(relay.tokens.issueToken({ provider: prv, credential: { case: "upstreamKey", value: "sk-x-1234567890" } })).rejects.toThrow();
    }
    expect(canaryConnections).toBe(0);
  });

  it("only an admin can add a provider", async () => {
    const anon = createClient(AdminService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    for (const auth of [undefined, `Bearer ${secret}`]) {
      const err = await anon
        .upsertProvider(
          { provider: { id: "canary", baseUrl: `http://${canaryHost}`, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } },
          { headers: auth ? { authorization: auth } : {} },
        )
        .then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
      expect(err?.code).toBe(Code.Unauthenticated);
    }
    expect(relay.app.providers.get("canary")).toBeUndefined();
  });
});

/** A dir JWE with any claims (the SDK validates `prv`); the same format the relay opens. */
function sealRaw(issuer: { kid: string; secret: string }, claims: Record<string, unknown>): Promise<string> {
  return new EncryptJWT(claims).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: issuer.kid }).encrypt(Buffer.from(issuer.secret, "base64url"));
}
