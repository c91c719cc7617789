/**
 * Which generation endpoint a path is, per API shape, as the upstream would route it (case,
 * escapes and trailing slashes ignored): the request policy inserts output caps only there,
 * since other endpoints refuse unknown fields.
 */
import type { PolicyShape } from "./request-policy.js";

export type Endpoint = "chat" | "completions" | "responses" | "messages" | "complete" | "generate" | "other";

const endpoints = new Map<string, Endpoint>(); // memo: a relay sees few distinct paths

/** Classifies a path as the upstream would route it: case, escapes and trailing slashes ignored. */
export function endpointOf(shape: PolicyShape, path: string): Endpoint {
  const memoKey = shape + " " + path;
  let e = endpoints.get(memoKey);
  if (e === undefined) {
    if (endpoints.size >= 1024) endpoints.clear();
    endpoints.set(memoKey, (e = classify(shape, path)));
  }
  return e;
}

function classify(shape: PolicyShape, path: string): Endpoint {
  let p = path.replace(/[?#].*$/s, "");
  try {
    p = decodeURIComponent(p);
  } catch {
    // keep the raw path: it matches nothing below unless it already did
  }
  p = p.toLowerCase().replace(/\/+$/, "");
  if (shape === "gemini") return /:(?:stream)?generatecontent$/.test(p) ? "generate" : "other";
  if (shape === "anthropic") return p.endsWith("/messages") ? "messages" : p.endsWith("/complete") ? "complete" : "other";
  if (p.endsWith("/chat/completions")) return "chat";
  if (p.endsWith("/completions")) return "completions";
  return p.endsWith("/responses") ? "responses" : "other";
}
