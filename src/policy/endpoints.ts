/**
 * Which generation endpoint of its shape a path is, as the upstream would route it (case,
 * escapes and trailing slashes ignored): the request policy inserts output caps only there,
 * since other endpoints refuse unknown fields. The endpoints are the shape's own data
 * (ShapePolicy.endpoints).
 */
import type { GenerationEndpoint, ShapePolicy } from "./shape-policy.js";

/** Per shape, path -> endpoint (null: none). A relay sees few distinct paths. */
const memo = new WeakMap<ShapePolicy, Map<string, GenerationEndpoint | null>>();

/** The generation endpoint a path is, or undefined for every other path. */
export function endpointOf(shape: ShapePolicy, path: string): GenerationEndpoint | undefined {
  let paths = memo.get(shape);
  if (paths === undefined) memo.set(shape, (paths = new Map()));
  let e = paths.get(path);
  if (e === undefined) {
    if (paths.size >= 1024) paths.clear();
    const p = normalise(path);
    paths.set(path, (e = shape.endpoints.find((g) => g.path.test(p)) ?? null));
  }
  return e ?? undefined;
}

function normalise(path: string): string {
  let p = path.replace(/[?#].*$/s, "");
  try {
    p = decodeURIComponent(p);
  } catch {
    // keep the raw path: it matches nothing below unless it already did
  }
  return p.toLowerCase().replace(/\/+$/, "");
}
