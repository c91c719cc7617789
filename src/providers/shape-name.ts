/**
 * The names of the API shapes, declared once for the relay (src/providers/types.ts) and the
 * admin console (console/src/sse.ts). No imports: the console's browser build takes it as is.
 */
export const SHAPE_NAMES = ["openai", "anthropic", "gemini"] as const;

export type ShapeName = (typeof SHAPE_NAMES)[number];
