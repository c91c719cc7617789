/** Google Gemini (Generative Language API): `x-goog-api-key`, model in the path. */
import { geminiShape } from "../shapes/gemini.js";
import type { ProviderSpec } from "../types.js";

export const gemini: ProviderSpec = {
  id: "gemini",
  baseUrl: "https://generativelanguage.googleapis.com",
  credential: { kind: "header", name: "x-goog-api-key" },
  defaultHeaders: {},
  shape: geminiShape,
  // Gemini Live (issue 25), and its ephemeral-token (Constrained) variant.
  websocket: {
    paths: [/^\/ws\/google\.ai\.generativelanguage\.v1(?:alpha|beta)\.GenerativeService\.BidiGenerateContent(?:Constrained)?$/],
    framing: "gemini-live",
  },
  builtin: true,
};
