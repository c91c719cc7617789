/**
 * Reads the top-level `model` string of a JSON body. Bodies that only pass through are never
 * re-serialised; this parse happens only when a token pins models.
 */
import { RelayError } from "../../errors.js";
import { isObject } from "./usage-meter.js";

export function modelFromJsonBody(body: Buffer): string | undefined {
  if (body.length === 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    throw new RelayError("bad_request", "request body is not valid JSON");
  }
  if (!isObject(value)) return undefined;
  const model = value.model;
  if (model === undefined) return undefined;
  if (typeof model !== "string") throw new RelayError("bad_request", "model must be a string");
  return model;
}
