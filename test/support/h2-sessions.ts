/**
 * h2c session managers for Connect and gRPC transports in a test file: a fresh one per transport,
 * each aborted in an afterAll registered where this is called (the relay waits for its sockets
 * when it closes, so call it after useRelay: its afterAll then runs first).
 */
import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll } from "vitest";

export function useH2Sessions(): (url: string) => Http2SessionManager {
  const sessions: Http2SessionManager[] = [];
  afterAll(() => {
    for (const s of sessions) s.abort();
  });
  return (url) => {
    const s = new Http2SessionManager(url);
    sessions.push(s);
    return s;
  };
}
