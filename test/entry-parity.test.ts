/**
 * The two entry points read a request the same way (issue 20, move 3): one token extractor
 * (`Authorization: DPoP <token>` with its proof works on /api and on RelayService.Relay alike),
 * request ids on both (the client's sane `x-request-id` or a new one, echoed and in the call's
 * record), and one error mapping (a database data exception, SQLSTATE class 22, is the caller's
 * 400 on the HTTP layer as it is InvalidArgument on the RPC side, never a 500).
 */
import { PGlite } from "@electric-sql/pglite";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { toRelayError } from "../src/errors.js";
import { sendError } from "../src/http/render-error.js";
import { createDpopProof, generateDpopKeyPair, jwkThumbprint, type DpopKeyPair } from "../src/sdk/dpop-fetch.js";
import { toConnectError } from "../src/services/errors.js";
import { openaiError } from "./support/http.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startRelay, type TestRelay } from "./support/relay.js";

let mock: MockProvider;
let relay: TestRelay;
let keys: DpopKeyPair;
let bound: string;

beforeAll(async () => {
  mock = await startMockProvider();
  relay = await startRelay({ mock });
  keys = await generateDpopKeyPair();
  bound = (await relay.issue({ limits: { bindJkt: await jwkThumbprint(keys.publicKey) } })).secret;
});
afterAll(async () => {
  await relay?.close();
  await mock?.close();
});

const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });
const RELAY_PATH = `/${RelayService.typeName}/Relay`;

/** Runs one RelayService.Relay call; the head's status, the answer's text and the response headers. */
async function relayRpc(headers: Record<string, string>): Promise<{ status: number; text: string; header: Headers }> {
  let header = new Headers();
  const client = createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  let status = 0;
  let text = "";
  for await (const part of client.relay(
    { provider: "openai", path: "/v1/chat/completions", body: new TextEncoder().encode(body) },
    { headers, onHeader: (h) => (header = h) },
  )) {
    if (part.part.case === "head") status = part.part.value.status;
    if (part.part.case === "chunk") text += new TextDecoder().decode(part.part.value.data);
  }
  return { status, text, header };
}

describe("Authorization: DPoP <token> with a valid proof", () => {
  it("works on /api", async () => {
    const url = `${relay.url}/api/openai/v1/chat/completions`;
    const proof = await createDpopProof(keys, "POST", url, bound);
    const res = await fetch(url, { method: "POST", headers: { authorization: `DPoP ${bound}`, dpop: proof, "content-type": "application/json" }, body });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("tok0");
  });

  it("works on RelayService.Relay", async () => {
    const proof = await createDpopProof(keys, "POST", `${relay.url}${RELAY_PATH}`, bound);
    const { status, text } = await relayRpc({ authorization: `DPoP ${bound}`, dpop: proof });
    expect(status).toBe(200);
    expect(text).toContain("tok0");
  });

  it("is still refused on RelayService without its proof", async () => {
    await expect(relayRpc({ authorization: `DPoP ${bound}` })).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unauthenticated);
  });
});

describe("request ids on RelayService, as on the HTTP layer", () => {
  it("echoes a sane client id and puts it in the call's record", async () => {
    const { secret } = await relay.issue();
    const { status, header } = await relayRpc({ authorization: `Bearer ${secret}`, "x-request-id": "rpc-req-42" });
    expect(status).toBe(200);
    expect(header.get("x-request-id")).toBe("rpc-req-42");
    expect(relay.calls.at(-1)?.requestId).toBe("rpc-req-42");
  });

  it("gives a new id when the client's is missing or not sane", async () => {
    const { secret } = await relay.issue();
    const { header } = await relayRpc({ authorization: `Bearer ${secret}`, "x-request-id": "bad id with spaces" });
    const id = header.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(relay.calls.at(-1)?.requestId).toBe(id);
  });
});

describe("one error mapping: a database data exception (SQLSTATE class 22)", () => {
  let pg: PGlite;
  let dataException: unknown;
  let server: Server;
  beforeAll(async () => {
    pg = new PGlite();
    dataException = await pg.query("select 2147483648::int4").then(
      () => expect.fail("expected numeric_value_out_of_range"),
      (e: unknown) => e,
    );
    // The HTTP layer's rendering of a thrown value, as the /api and leaked-tokens routes use it.
    server = createServer((_req, res) => sendError(res, toRelayError(dataException)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  afterAll(async () => {
    server?.close();
    await pg?.close();
  });

  it("is a real SQLSTATE 22003", () => {
    expect((dataException as { code?: string }).code).toBe("22003");
  });

  it("is a 400 in the OpenAI shape on the HTTP side, not a 500", async () => {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    expect(res.status).toBe(400);
    expect(openaiError(await res.text())).toMatchObject({ code: "bad_request", message: "invalid argument" });
  });

  it("is InvalidArgument on the RPC side, from the same mapping", () => {
    expect(toRelayError(dataException)).toMatchObject({ code: "bad_request", status: 400 });
    expect(toConnectError(dataException).code).toBe(Code.InvalidArgument);
  });
});
