/**
 * How the playground asks each API shape for a streamed chat answer: the path, query and JSON
 * body of one RelayService.Relay request. Providers are data here (STYLE habit 6): a provider
 * id maps to a shape, and a free-text provider id speaks the OpenAI shape.
 */
import type { Shape } from "./sse.js";

export interface ShapedRequest {
  path: string;
  query: string;
  body: unknown;
}

export interface Preset {
  shape: Shape;
  models: string[];
}

export const PRESETS: Record<string, Preset> = {
  openai: { shape: "openai", models: ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"] },
  anthropic: { shape: "anthropic", models: ["claude-3-5-haiku-latest", "claude-sonnet-4-5"] },
  gemini: { shape: "gemini", models: ["gemini-2.0-flash", "gemini-2.5-flash"] },
};

export function shapeOf(provider: string): Shape {
  return PRESETS[provider]?.shape ?? "openai";
}

/** A model to suggest for a provider (the first preset), or a neutral OpenAI one. */
export function defaultModel(provider: string): string {
  return PRESETS[provider]?.models[0] ?? "gpt-4o-mini";
}

const MAX_TOKENS = 1024;

export function chatRequest(shape: Shape, model: string, prompt: string): ShapedRequest {
  const messages = [{ role: "user", content: prompt }];
  switch (shape) {
    case "anthropic":
      return { path: "/v1/messages", query: "", body: { model, max_tokens: MAX_TOKENS, messages, stream: true } };
    case "gemini":
      return {
        path: `/v1beta/models/${encodeURIComponent(model)}:streamGenerateContent`,
        query: "alt=sse",
        body: { contents: [{ role: "user", parts: [{ text: prompt }] }] },
      };
    case "openai":
      return { path: "/v1/chat/completions", query: "", body: { model, messages, stream: true, stream_options: { include_usage: true } } };
  }
}

/** `name: value` lines into headers; lines without a colon are ignored. */
export function parseHeaderLines(text: string): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 1) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) out.push({ name, value: line.slice(colon + 1).trim() });
  }
  return out;
}
