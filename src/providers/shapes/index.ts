/** API shapes by name and by their protobuf enum number (ApiShape in admin_service.proto). */
import type { ApiShape, ShapeName } from "../types.js";
import { anthropicShape } from "./anthropic.js";
import { geminiShape } from "./gemini.js";
import { openaiShape } from "./openai.js";

export const SHAPES: Record<ShapeName, ApiShape> = {
  openai: openaiShape,
  anthropic: anthropicShape,
  gemini: geminiShape,
};

const BY_NUMBER: Record<number, ApiShape> = { 0: openaiShape, 1: openaiShape, 2: anthropicShape, 3: geminiShape };
const NUMBER: Record<ShapeName, number> = { openai: 1, anthropic: 2, gemini: 3 };

export function shapeFromNumber(n: number): ApiShape {
  return BY_NUMBER[n] ?? openaiShape;
}

export function shapeNumber(shape: ApiShape): number {
  return NUMBER[shape.name];
}

export { anthropicShape, geminiShape, openaiShape };
