/** OpenAI: https://api.openai.com, `Authorization: Bearer`. Clients use `/api/openai/v1/...`. */
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

export const openai: ProviderSpec = {
  ...openaiCompatible("openai", "https://api.openai.com", null),
  // The Realtime API (issue 25): `wss://…/v1/realtime?model=…`, relayed by src/realtime/.
  websocket: { paths: [/^\/v1\/realtime$/], framing: "openai-realtime" },
};
