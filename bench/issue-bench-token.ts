/** Issues the relay token the bench uses, through the real TokenService with the admin key. */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";

export const BENCH_UPSTREAM_KEY = "sk-bench-upstream-key-0123456789abcdef";

/** A token for the openai provider with a very large call cap (counting stays on). */
export async function issueBenchToken(relayUrl: string, adminKey: string): Promise<string> {
  const transport = createConnectTransport({ baseUrl: relayUrl, httpVersion: "1.1" });
  const tokens = createClient(TokenService, transport);
  const res = await tokens.issueToken(
    {
      provider: "openai",
      credential: { case: "upstreamKey", value: BENCH_UPSTREAM_KEY },
      subject: "bench",
      limits: { maxCalls: 1_000_000_000_000n },
      expiry: { case: "expiresIn", value: { seconds: 3600n } },
    },
    { headers: { authorization: `Bearer ${adminKey}` } },
  );
  return res.secret;
}

/** The calls the relay has counted on a token (IntrospectToken, authenticated by the token). */
export async function countedCalls(relayUrl: string, secret: string): Promise<number> {
  const transport = createConnectTransport({ baseUrl: relayUrl, httpVersion: "1.1" });
  const res = await createClient(TokenService, transport).introspectToken({}, { headers: { authorization: `Bearer ${secret}` } });
  return Number(res.token?.callsUsed ?? -1);
}
