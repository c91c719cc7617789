/**
 * The relay engine alone, with fakes for what it talks to: a token store that counts in memory
 * and an upstream client that answers (or fails) from code. The rest is real and needs no I/O:
 * the provider registry (built-ins), in-memory limits, the DPoP gate, an empty pool registry.
 * What it pins: a counted call is forwarded once and its usage recorded; a call the policy
 * refuses forwards nothing and counts nothing; a failure before any byte was sent refunds the
 * call, one after does not (DESIGN 3.3).
 */
import { drizzle } from "drizzle-orm/postgres-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import * as schema from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import { PoolRegistry } from "../keys/pool-registry.js";
import { SecretBox } from "../keys/secret-box.js";
import { Limits } from "../limits/limits.js";
import { ProviderRegistry } from "../providers/registry.js";
import { IssuerKeyring } from "../tokens/issuer-keyring.js";
import { MemoryReplayCache } from "../tokens/dpop.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { TokenStore, type UseOutcome } from "../tokens/token-store.js";
import { DpopGate } from "./dpop-gate.js";
import { RelayEngine, type CallRecord, type RelayEnd, type RelayInput, type RelaySink } from "./engine.js";
import { UpstreamClient, UpstreamFailed, type UpstreamResponse } from "./upstream-client.js";
import type { UpstreamTarget } from "./upstream-url.js";
import { tokenMeta as unitToken } from "../../test/support/token-meta.js";
import type { CallSignal } from "./types.js";

const SECRET = "fake-relay-token";
const KEY = "sk-fake-upstream-key";
const ANSWER = JSON.stringify({ id: "c1", choices: [{ message: { content: "hi" } }], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } });

/** A database that cannot be reached: nothing in these tests may query it. */
const noDb = drizzle.mock({ schema });
const box = new SecretBox(Buffer.alloc(32, 7));

function tokenMeta(over: Partial<TokenMeta> = {}): TokenMeta {
  return unitToken({ id: "tok_fake", upstreamKey: KEY, maxCalls: 10, ...over });
}

/** Counts calls in memory; knows one secret. */
class FakeTokens extends TokenStore {
  used = 0;
  refunded = 0;
  constructor(readonly meta: TokenMeta) {
    const providers = new ProviderRegistry(noDb, {});
    super(
      noDb,
      box,
      { cacheMs: 0, revocationPollMs: 0, maxLease: 1, idleMs: 1000 },
      {
        keyring: new IssuerKeyring(noDb, box),
        providers,
        pools: new PoolRegistry(noDb, box, providers, { authStrikes: 3, cooldownMaxMs: 1000, tokenKeyErrorsPerMinute: 0 }),
        relayKey: undefined,
      },
    );
  }
  override async authenticate(secret: string): Promise<TokenMeta> {
    if (secret !== SECRET) throw new RelayError("unauthenticated", "invalid token");
    return this.meta;
  }
  override async use(): Promise<UseOutcome> {
    this.used++;
    return { callsLeft: this.meta.maxCalls === null ? null : this.meta.maxCalls - this.used };
  }
  override async refund(): Promise<void> {
    this.refunded++;
  }
}

interface Sent {
  url: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

/** Records what would have gone to the provider; answers with `answer()`. */
class FakeUpstream extends UpstreamClient {
  readonly sent: Sent[] = [];
  answer: () => UpstreamResponse = () => jsonAnswer(ANSWER);
  constructor() {
    super({ headersTimeoutMs: 1000, idleTimeoutMs: 1000 });
  }
  override async send(
    url: UpstreamTarget | URL | string,
    _method: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    _signal: CallSignal,
  ): Promise<UpstreamResponse> {
    this.sent.push({ url: typeof url === "object" && "path" in url ? url.origin + url.path : String(url), headers, body });
    return this.answer();
  }
}

function jsonAnswer(text: string): UpstreamResponse {
  const chunk = Buffer.from(text);
  return {
    statusCode: 200,
    headers: { "content-type": "application/json", "content-length": String(chunk.length) },
    body: {
      async pipe(write) {
        await write(chunk);
      },
      destroy() {},
      async dump() {},
    },
  };
}

/** Collects what the engine hands its entry point. */
function collectingSink(): RelaySink & { status?: number; chunks: Buffer[]; ended?: RelayEnd } {
  const sink: RelaySink & { status?: number; chunks: Buffer[]; ended?: RelayEnd } = {
    chunks: [],
    head(status) {
      sink.status = status;
    },
    write(chunk) {
      sink.chunks.push(chunk);
    },
    end(end) {
      sink.ended = end;
    },
  };
  return sink;
}

function chatInput(body: object): RelayInput {
  return {
    providerId: "openai",
    method: "POST",
    path: "/v1/chat/completions",
    query: undefined,
    headers: { "content-type": "application/json" },
    body: Buffer.from(JSON.stringify(body)),
    token: SECRET,
    origin: undefined,
    signal: new AbortController().signal,
  };
}

const messages = [{ role: "user", content: "hi" }];

describe("RelayEngine", () => {
  let tokens: FakeTokens;
  let upstream: FakeUpstream;
  let limits: Limits;
  let calls: CallRecord[];
  let engine: RelayEngine;

  async function setUp(meta: TokenMeta): Promise<void> {
    tokens = new FakeTokens(meta);
    upstream = new FakeUpstream();
    limits = await Limits.create({ perIp: null, globalConcurrency: null, perKeyConcurrency: null, idleMs: 60_000 });
    calls = [];
    const providers = new ProviderRegistry(noDb, { openai: "http://upstream.test" });
    engine = new RelayEngine({
      providers,
      tokens,
      upstream,
      pools: new PoolRegistry(noDb, box, providers, { authStrikes: 3, cooldownMaxMs: 1000, tokenKeyErrorsPerMinute: 0 }),
      limits,
      dpop: new DpopGate(() => "http://relay.test", new MemoryReplayCache(), undefined),
      upstreamAttempts: 1,
      onCall: (r) => calls.push(r),
    });
  }
  beforeEach(() => setUp(tokenMeta()));
  afterEach(async () => {
    await upstream.close();
    await limits.close();
  });

  it("an answer whose client left while its last chunk waited for the socket is TRUNCATED, never COMPLETE", async () => {
    // The provider's answer in two chunks; the upstream ends whole after the second.
    upstream.answer = () => ({
      statusCode: 200,
      headers: { "content-type": "text/event-stream" },
      body: {
        async pipe(write) {
          await write(Buffer.from('data: {"choices":[{"delta":{"content":"a"}}]}\n\n'));
          await write(Buffer.from('data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n'));
        },
        destroy() {},
        async dump() {},
      },
    });
    const gone = new AbortController();
    let writes = 0;
    let ended: RelayEnd | undefined;
    // The socket takes the first chunk; the last finds it full and the client closes before it
    // drains: HttpSink's pending write resolves on `close`, and the HTTP layer aborts the signal.
    const sink: RelaySink = {
      head() {},
      write() {
        if (++writes === 1) return;
        return new Promise<void>((resolve) => setTimeout(() => (gone.abort(), resolve()), 10));
      },
      end(end) {
        ended = end;
      },
    };
    await engine.relay({ ...chatInput({ model: "gpt-mock", stream: true, messages }), signal: gone.signal }, sink);
    expect(calls.map((r) => r.outcome)).toEqual([Outcome.TRUNCATED]);
    expect(ended?.outcome).toBe(Outcome.TRUNCATED);
  });

  it("forwards a counted call once, with the real key, and records its usage", async () => {
    const sink = collectingSink();
    await engine.relay(chatInput({ model: "gpt-mock", messages }), sink);
    expect(tokens.used).toBe(1);
    expect(upstream.sent).toHaveLength(1);
    expect(upstream.sent[0]!.url).toBe("http://upstream.test/v1/chat/completions");
    expect(upstream.sent[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(JSON.stringify(upstream.sent[0]!.headers)).not.toContain(SECRET);
    expect(sink.status).toBe(200);
    expect(Buffer.concat(sink.chunks).toString()).toBe(ANSWER);
    expect(sink.ended).toMatchObject({ outcome: Outcome.COMPLETE, callsLeft: 9, usage: { promptTokens: 3, completionTokens: 4, totalTokens: 7 } });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      tokenId: "tok_fake",
      provider: "openai",
      model: "gpt-mock",
      status: 200,
      outcome: Outcome.COMPLETE,
      usage: { totalTokens: 7 },
    });
    expect(tokens.refunded).toBe(0);
  });

  it("forwards nothing and counts nothing when the policy refuses the call", async () => {
    await setUp(tokenMeta({ models: new Set(["gpt-allowed"]) }));
    const sink = collectingSink();
    const refused = await engine.relay(chatInput({ model: "gpt-other", messages }), sink).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(RelayError);
    expect((refused as RelayError).status).toBe(403);
    expect(upstream.sent).toHaveLength(0);
    expect(tokens.used).toBe(0);
    expect(calls).toHaveLength(0);
    expect(sink.status).toBeUndefined();
  });

  it("refunds a call when the upstream failed before a byte was sent", async () => {
    upstream.answer = () => {
      throw new UpstreamFailed("upstream_unreachable", "upstream unreachable", false, new Error("ECONNREFUSED"));
    };
    const sink = collectingSink();
    await expect(engine.relay(chatInput({ model: "gpt-mock", messages }), sink)).rejects.toMatchObject({ code: "upstream_unreachable" });
    expect(upstream.sent).toHaveLength(1);
    expect(tokens.used).toBe(1);
    expect(tokens.refunded).toBe(1);
    expect(calls.map((c) => c.outcome)).toEqual([Outcome.REFUNDED]);
    expect(sink.status).toBeUndefined();
  });

  it("keeps a call counted when the upstream failed after the request was sent", async () => {
    upstream.answer = () => {
      throw new UpstreamFailed("upstream_unreachable", "upstream connection lost", true, new Error("ECONNRESET"));
    };
    const sink = collectingSink();
    await expect(engine.relay(chatInput({ model: "gpt-mock", messages }), sink)).rejects.toMatchObject({ code: "upstream_unreachable" });
    expect(upstream.sent).toHaveLength(1);
    expect(tokens.used).toBe(1);
    expect(tokens.refunded).toBe(0);
    expect(calls.map((c) => c.outcome)).toEqual([Outcome.UPSTREAM_ERROR]);
  });
});
