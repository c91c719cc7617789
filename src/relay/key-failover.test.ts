/**
 * Failover decisions with a fake upstream (one key refusing connections while the others
 * answer cannot be staged with one mock provider): a connection that carried no byte moves on
 * and leaves the call refundable; once any attempt may have reached a provider, `reached` is
 * true, and a failure after sending is never retried. End to end: test/pool-knockout.test.ts,
 * test/refunds.test.ts.
 */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { PoolKey, PoolRegistry } from "../keys/pool-registry.js";
import { KeyErrorBudget } from "../keys/key-error-budget.js";
import { ModelRests } from "../keys/model-rests.js";
import type { Limits } from "../limits/limits.js";
import { openai } from "../providers/builtin/openai.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { SendFailed, sendWithFailover } from "./key-failover.js";
import type { ReadInput } from "./types.js";
import { UpstreamFailed, type UpstreamClient, type UpstreamResponse } from "./upstream-client.js";

type Answer = number | "refused" | "timeout";

/** A pool whose keys are tried in order, and an upstream answering per key. */
function setup(answers: Record<string, Answer>) {
  const keys: PoolKey[] = Object.keys(answers).map((id) => ({
    id,
    pool: "p",
    key: `sk-${id}`,
    weight: 1,
    lastUsedMs: 0,
    current: 0,
    health: { strikes: 0, rests: new ModelRests() },
  }));
  const pools = {
    keyErrors: new KeyErrorBudget(0),
    pick: (_p: string, tried: ReadonlySet<string>) => keys.find((k) => !tried.has(k.id)),
    hasUsable: (_p: string, tried: ReadonlySet<string>) => keys.some((k) => !tried.has(k.id)),
    restLeft: () => 0,
    succeeded: () => {},
    strike: async () => {},
    rest: () => {},
  } as unknown as PoolRegistry;
  const sent: string[] = [];
  const upstream = {
    async send(_url: URL, _m: string, headers: Record<string, string>): Promise<UpstreamResponse> {
      const id = headers.authorization!.replace("Bearer sk-", "");
      sent.push(id);
      const a = answers[id]!;
      if (a === "refused") throw new UpstreamFailed("upstream_unreachable", "upstream unreachable", false, new Error("ECONNREFUSED"));
      if (a === "timeout") throw new UpstreamFailed("upstream_timeout", "upstream timed out", true, new Error("UND_ERR_HEADERS_TIMEOUT"));
      return { statusCode: a, headers: {}, body: { pipe: async () => {}, destroy: () => {}, dump: async () => {} } };
    },
  } as unknown as UpstreamClient;
  const limits = { acquireKey: () => () => {} } as unknown as Limits;
  const token = { id: "tok_1", pool: "p" } as TokenMeta;
  const input = {
    method: "POST",
    path: "/v1/chat/completions",
    query: undefined,
    headers: {},
    body: Buffer.from("{}"),
    signal: Object.assign(new EventEmitter(), { aborted: false }),
  } as unknown as ReadInput;
  const send = (attempts = 3) => sendWithFailover({ upstream, pools, limits, attempts }, token, openai, "m", input);
  return { send, sent };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => expect.unreachable(),
    (e: unknown) => e as SendFailed,
  );

describe("sendWithFailover", () => {
  it("a refused connection moves on to the next key, and the attempts are listed", async () => {
    const { send, sent } = setup({ a: "refused", b: 200 });
    const ok = await send();
    expect(ok).toMatchObject({ keyId: "b", attempts: "a:connect,b:200" });
    expect(sent).toEqual(["a", "b"]);
  });

  it("no attempt sent a byte: not reached (refundable)", async () => {
    const { send } = setup({ a: "refused", b: "refused", c: "refused", d: 200 });
    const e = await failure(send());
    expect(e).toBeInstanceOf(SendFailed);
    expect({ reached: e.reached, code: e.error.code, attempts: e.attempts, keyId: e.keyId }).toEqual({
      reached: false,
      code: "upstream_unreachable",
      attempts: "a:connect,b:connect,c:connect",
      keyId: "c",
    });
  });

  it("a timeout after sending is not retried, and reached", async () => {
    const { send, sent } = setup({ a: "timeout", b: 200 });
    const e = await failure(send());
    expect({ reached: e.reached, code: e.error.code, attempts: e.attempts, keyId: e.keyId }).toEqual({
      reached: true,
      code: "upstream_timeout",
      attempts: undefined,
      keyId: "a",
    });
    expect(sent).toEqual(["a"]);
  });

  it("reached when ANY attempt may have sent bytes, even if the first did not", async () => {
    const { send } = setup({ a: "refused", b: "timeout", c: 200 });
    const e = await failure(send());
    expect({ reached: e.reached, attempts: e.attempts }).toEqual({ reached: true, attempts: "a:connect,b:504" });
  });

  it("fails over on 429 and 401 only, within upstreamAttempts", async () => {
    expect(await setup({ a: 429, b: 401, c: 200 }).send()).toMatchObject({ keyId: "c", attempts: "a:429,b:401,c:200" });
    expect(await setup({ a: 429, b: 429, c: 200 }).send(2)).toMatchObject({ keyId: "b", attempts: "a:429,b:429" });
    for (const status of [500, 503, 403, 400]) {
      const { send, sent } = setup({ a: status, b: 200 });
      expect(await send()).toMatchObject({ keyId: "a", attempts: undefined });
      expect(sent).toEqual(["a"]);
    }
  });
});
