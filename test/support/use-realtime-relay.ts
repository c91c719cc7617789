/**
 * The fixture of the voice-session suites: a mock Realtime / Live provider (mock-realtime.ts)
 * and a relay whose openai and gemini providers point at it, started in a beforeAll and closed
 * in an afterAll of the block that calls this; live views of both, as useRelay gives.
 */
import { afterAll, beforeAll } from "vitest";
import { late } from "./late.js";
import { startMockRealtime, type MockRealtime } from "./mock-realtime.js";
import { startRelay, type TestRelay } from "./relay.js";

export function useRealtimeRelay(): { relay: TestRelay; mock: MockRealtime } {
  let mock: MockRealtime | undefined;
  let relay: TestRelay | undefined;
  beforeAll(async () => {
    mock = await startMockRealtime();
    relay = await startRelay({ config: { providerBaseUrls: { openai: mock.url, gemini: mock.url } } });
  });
  afterAll(async () => {
    await relay?.close();
    await mock?.close();
  });
  return { relay: late("the relay", () => relay), mock: late("the mock provider", () => mock) };
}
