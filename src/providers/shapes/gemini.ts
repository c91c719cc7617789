/** The Gemini generateContent shape: the model is a path segment, usage is `usageMetadata`. */
import { RelayError } from "../../errors.js";
import type { ApiShape, Usage } from "../types.js";
import { createUsageMeter, isObject, usageOf } from "./usage-meter.js";

// Google APIs' error status names (https://cloud.google.com/apis/design/errors).
const STATUS: Record<string, string> = {
  bad_request: "INVALID_ARGUMENT",
  unauthenticated: "UNAUTHENTICATED",
  permission_denied: "PERMISSION_DENIED",
  not_found: "NOT_FOUND",
  payload_too_large: "INVALID_ARGUMENT",
  unsupported_media_type: "INVALID_ARGUMENT",
  rate_limited: "RESOURCE_EXHAUSTED",
  calls_exhausted: "RESOURCE_EXHAUSTED",
  budget_exhausted: "RESOURCE_EXHAUSTED",
  upstream_timeout: "DEADLINE_EXCEEDED",
  unavailable: "UNAVAILABLE",
};

const MODEL_IN_PATH = /\/models\/([^/:]+)(?::|$)/;

function readUsage(value: unknown, seen: Usage | undefined): Usage | undefined {
  if (!isObject(value) || !isObject(value.usageMetadata)) return seen;
  const u = value.usageMetadata;
  return usageOf(u.promptTokenCount, u.candidatesTokenCount, u.totalTokenCount);
}

export const geminiShape: ApiShape = {
  name: "gemini",
  errorBody(err: RelayError): string {
    return JSON.stringify({ error: { code: err.status, message: err.message, status: STATUS[err.code] ?? "INTERNAL" } });
  },
  modelInPath(path: string): string | undefined {
    const m = MODEL_IN_PATH.exec(path);
    if (!m?.[1]) return undefined;
    try {
      return decodeURIComponent(m[1]);
    } catch {
      // `%zz`, a cut UTF-8 sequence: the client's mistake, never a 500.
      throw new RelayError("bad_request", "invalid path");
    }
  },
  meter: (contentType) => createUsageMeter(contentType, readUsage, (line) => line.includes('"usageMetadata"')),
  // A 400 INVALID_ARGUMENT whose google.rpc.ErrorInfo says `"reason": "API_KEY_INVALID"`.
  keyInvalid: (body) =>
    isObject(body) && isObject(body.error) && Array.isArray(body.error.details) && body.error.details.some((d) => isObject(d) && d.reason === "API_KEY_INVALID"),
};
