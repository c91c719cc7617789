/**
 * What a request lets the model generate at most, for budget reservations (issue 18, finding
 * 2): the smallest output cap the body names (else the token's cap, when the policy put it in),
 * and the choices it asks for. Read after the policy's checks, so every number here is one the
 * provider will honour. Pure.
 */
import { isNull, readNumber, type ScanResult } from "./json-scan.js";

/** The most choices (`n`) a call's reservation counts (src/tokens/budget-reservations.ts). */
export const MAX_CHOICES = 128;

export interface OutputBound {
  /** Undefined when nothing bounds the output. */
  outputCap?: number;
  /** At least 1. */
  choices: number;
}

/**
 * `fields` is the object the caps live in (the body, or Gemini's generationConfig; undefined
 * when absent); `capInserted`: the policy inserts the token's cap when the body names none.
 */
export function outputBound(
  body: Buffer,
  fields: ScanResult | undefined,
  capFields: readonly string[],
  nFields: readonly string[],
  tokenCap: number | undefined,
  capInserted: boolean,
): OutputBound {
  let cap: number | undefined;
  let capNull = false;
  let choices = 1;
  for (const name of capFields) {
    const f = fields?.fields.get(name);
    if (!f) continue;
    const v = readNumber(body, f);
    if (v !== undefined && v >= 0) cap = Math.min(cap ?? v, v);
    // A null cap is replaced by the token's cap.
    else capNull ||= isNull(body, f);
  }
  for (const name of nFields) {
    const f = fields?.fields.get(name);
    const v = f ? readNumber(body, f) : undefined;
    if (v !== undefined && v > choices) choices = Math.ceil(v);
    // Not a number (Google's JSON takes `"8"` for 8): the most a reservation counts.
    else if (f && v === undefined && !isNull(body, f)) choices = MAX_CHOICES;
  }
  if (cap === undefined && (capInserted || capNull)) cap = tokenCap;
  return { ...(cap === undefined ? {} : { outputCap: cap }), choices };
}
