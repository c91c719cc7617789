/**
 * The Connect routes' front door when its per-IP check waits (on Redis): an h2c client that
 * resets its stream meanwhile must not take the relay down. The gate's refusal wrote its gRPC
 * trailers-only answer with `stream.respond()`, which throws on a stream already closed, and
 * the rejection was left unhandled: Node ended the process (found by test/probe-input.test.ts's
 * probe; fixed in src/services/rpc-gate.ts and rpc-handler.ts).
 */
import { connect as h2connect, constants } from "node:http2";
import { expect, it } from "vitest";
import { redisAvailable } from "./support/databases.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const redisUp = await redisAvailable();
const { relay } = useRelay({ config: redisUp ? { redisUrl: "redis://127.0.0.1:6379", redisPerIp: true, ipRpm: 1_000_000 } : {} });

it.skipIf(!redisUp)("gRPC admin calls without the key, reset right after their headers: nothing rejects unhandled", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e);
  };
  process.on("unhandledRejection", onUnhandled);
  try {
    const s = h2connect(relay.url);
    s.on("error", () => {});
    await new Promise((r) => s.once("remoteSettings", r));
    for (let i = 0; i < 20; i++) {
      const st = s.request({ ":method": "POST", ":path": "/relayapi.v1.AdminService/ListIssuers", "content-type": "application/grpc" });
      st.on("error", () => {});
      // After the headers went, while the gate awaits Redis (a few ms).
      setTimeout(() => st.close(constants.NGHTTP2_CANCEL), 1);
    }
    await sleep(500);
    s.destroy();
    expect(unhandled).toEqual([]);
    // The refusal itself still reaches a client that waits for it.
    const answer = await new Promise<Record<string, unknown>>((resolve) => {
      const c = h2connect(relay.url);
      const st = c.request({ ":method": "POST", ":path": "/relayapi.v1.AdminService/ListIssuers", "content-type": "application/grpc" });
      st.on("response", (h) => {
        resolve(h);
        c.close();
      });
      st.end();
    });
    expect(answer["grpc-status"]).toBe("16");
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
