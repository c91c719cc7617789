/**
 * OpenAI Realtime framing (https://platform.openai.com/docs/api-reference/realtime): the model
 * is the upgrade's `?model=` (Azure: `?deployment=`); a client's `session.update` may name
 * another in `session.model`; each `response.done` carries that response's `usage`
 * (`input_tokens`, `output_tokens`, `total_tokens`, text and audio together), summed here.
 * Errors are `{"type":"error","error":{...}}` events.
 */
import type { RelayError } from "../errors.js";
import { openaiUsage } from "../providers/shapes/openai.js";
import { isObject, sumUsage } from "../providers/shapes/usage-meter.js";
import type { ApiShape, Usage } from "../providers/types.js";
import { ESCAPE, parseJson, UNREADABLE_MODEL, type NamedModel, type RealtimeFraming, type SessionReader } from "./framing.js";

const MODEL = Buffer.from('"model"');
const RESPONSE_EVENT = Buffer.from('"response.');

class OpenaiReader implements SessionReader {
  #usage: Usage | undefined;
  #open = 0;

  clientModel(data: Buffer): NamedModel {
    if (!data.includes(MODEL) && !data.includes(ESCAPE)) return undefined;
    const msg = parseJson(data);
    if (!isObject(msg) || msg.type !== "session.update" || !isObject(msg.session) || !("model" in msg.session)) return undefined;
    const model = msg.session.model;
    return typeof model === "string" ? model : UNREADABLE_MODEL;
  }

  server(data: Buffer): void {
    if (!data.includes(RESPONSE_EVENT)) return;
    const msg = parseJson(data);
    if (!isObject(msg)) return;
    if (msg.type === "response.created") this.#open++;
    else if (msg.type === "response.done") {
      this.#open = Math.max(0, this.#open - 1);
      if (isObject(msg.response)) this.#usage = sumUsage(this.#usage, openaiUsage(msg.response.usage, undefined));
    }
  }

  usage(): Usage | undefined {
    return this.#usage;
  }

  busy(): boolean {
    return this.#open > 0;
  }
}

export const openaiRealtime: RealtimeFraming = {
  queryModels: (query) => [...query.getAll("model"), ...query.getAll("deployment")],
  modelInFirstMessage: false,
  // The browser spelling of the beta API's header (OpenAI's own browser convention).
  upstreamHeaders: (protocols): Record<string, string> => (protocols.includes("openai-beta.realtime-v1") ? { "openai-beta": "realtime=v1" } : {}),
  errorEvent(err: RelayError, shape: ApiShape): string {
    const body = JSON.parse(shape.errorBody(err)) as { error: Record<string, unknown> };
    return JSON.stringify({ type: "error", event_id: null, error: { ...body.error, param: null } });
  },
  reader: () => new OpenaiReader(),
};
