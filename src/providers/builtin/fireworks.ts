/**
 * Fireworks AI: OpenAI-compatible, `Authorization: Bearer`. Its image workflows name the model
 * in the path (`/v1/workflows/accounts/<a>/models/<m>/text_to_image`), where it wins over any
 * body `model`; the model is then `accounts/<a>/models/<m>`, as chat bodies name it.
 */
import { RelayError } from "../../errors.js";
import type { ProviderSpec } from "../types.js";
import { openaiCompatible } from "./openai-compatible.js";

const MODEL_IN_PATH = /(?:^|\/)(accounts\/[^/]+\/models\/[^/:]+)/i;

function modelInPath(path: string): string | undefined {
  const m = MODEL_IN_PATH.exec(path);
  if (!m?.[1]) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    throw new RelayError("bad_request", "invalid path");
  }
}

export const fireworks: ProviderSpec = {
  ...openaiCompatible("fireworks", "https://api.fireworks.ai/inference"),
  models: { inPath: modelInPath, inBody: true },
};
