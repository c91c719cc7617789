/**
 * Gemini Live framing (https://ai.google.dev/api/live): the first client message is
 * `{"setup": {"model": "models/<m>", ...}}`, read (and held) before the provider is dialled;
 * the provider answers `setupComplete`, then `serverContent` messages, any of which may carry
 * `usageMetadata`. Usage is per turn, and a turn may repeat it (later reports replace earlier
 * ones): the last report of a turn counts, and a turn ends at `serverContent.turnComplete`.
 * Live has no error event (it closes with a reason): a cap is announced with the Gemini API's
 * error body, `{"error":{"code","message","status"}}`.
 */
import type { RelayError } from "../errors.js";
import { isObject, sumUsage, usageOf } from "../providers/shapes/usage-meter.js";
import { geminiCompletion, geminiParts } from "../providers/shapes/usage-parts.js";
import type { ApiShape, Usage } from "../providers/types.js";
import { ESCAPE, parseJson, UNREADABLE_MODEL, type NamedModel, type RealtimeFraming, type SessionReader } from "./framing.js";

const SETUP = Buffer.from('"setup"');
const USAGE = Buffer.from('"usageMetadata"');
const TURN_COMPLETE = Buffer.from('"turnComplete"');
const SERVER_CONTENT = Buffer.from('"serverContent"');

/** `models/<m>` names `<m>`, as a pin and a Gemini path name it (src/providers/shapes/gemini.ts). */
function modelName(model: unknown): NamedModel {
  if (typeof model !== "string") return UNREADABLE_MODEL;
  return model.startsWith("models/") ? model.slice("models/".length) : model;
}

/**
 * Live's `usageMetadata` (https://ai.google.dev/api/live#usagemetadata) as generateContent's is
 * read (src/providers/shapes/usage-parts.ts), by Live's names: `responseTokenCount` (and
 * `responseTokensDetails`) for the candidates, thinking billed as output, the prompt of a tool
 * call as input, audio by modality (dearer than text: priced apart).
 */
function liveUsage(u: Record<string, unknown>): Usage {
  const response = u.responseTokenCount ?? u.candidatesTokenCount;
  const completion = geminiCompletion({ candidatesTokenCount: response, thoughtsTokenCount: u.thoughtsTokenCount });
  const tool = u.toolUsePromptTokenCount;
  const prompt = typeof tool === "number" && typeof u.promptTokenCount === "number" ? u.promptTokenCount + tool : u.promptTokenCount;
  const parts = geminiParts({
    cachedContentTokenCount: u.cachedContentTokenCount,
    thoughtsTokenCount: u.thoughtsTokenCount,
    promptTokensDetails: u.promptTokensDetails,
    candidatesTokensDetails: u.responseTokensDetails ?? u.candidatesTokensDetails,
  });
  return usageOf(prompt, completion, u.totalTokenCount, 0, parts);
}

class GeminiReader implements SessionReader {
  /** Usage of the turns that ended, and the last report of the turn under way. */
  #done: Usage | undefined;
  #turn: Usage | undefined;
  /** Inside a turn (between its first serverContent and its turnComplete). */
  #inTurn = false;

  clientModel(data: Buffer): NamedModel {
    if (!data.includes(SETUP) && !data.includes(ESCAPE)) return undefined;
    const msg = parseJson(data);
    if (!isObject(msg) || !isObject(msg.setup)) return undefined;
    return "model" in msg.setup ? modelName(msg.setup.model) : UNREADABLE_MODEL;
  }

  server(data: Buffer): void {
    const content = data.includes(SERVER_CONTENT);
    const usage = data.includes(USAGE);
    const complete = data.includes(TURN_COMPLETE);
    if (content && !this.#inTurn) {
      // A new turn: the previous one's last report is final.
      this.#done = sumUsage(this.#done, this.#turn);
      this.#turn = undefined;
      this.#inTurn = true;
    }
    if (!usage && !complete) return;
    const msg = parseJson(data);
    if (!isObject(msg)) return;
    if (isObject(msg.usageMetadata)) this.#turn = liveUsage(msg.usageMetadata);
    if (isObject(msg.serverContent) && msg.serverContent.turnComplete === true) this.#inTurn = false;
  }

  usage(): Usage | undefined {
    return sumUsage(this.#done, this.#turn);
  }

  busy(): boolean {
    return this.#inTurn;
  }
}

export const geminiLive: RealtimeFraming = {
  queryModels: () => [],
  modelInFirstMessage: true,
  upstreamHeaders: () => ({}),
  errorEvent: (err: RelayError, shape: ApiShape) => shape.errorBody(err),
  reader: () => new GeminiReader(),
};
