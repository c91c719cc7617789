/**
 * What checkPolicy hands the budget reservation (src/tokens/budget-reservations.ts) for
 * Gemini's Imagen and Veo calls: every sample of every instance is a choice, the provider's
 * default count when the body names none, and the pin holds the model the path names.
 */
import { describe, expect, it } from "vitest";
import { RelayError } from "../errors.js";
import { gemini } from "../providers/builtin/gemini.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { callBounds, DEFAULT_OUTPUT_RESERVE } from "../tokens/budget-reservations.js";
import { checkPolicy } from "./token-policy.js";
import { tokenMeta as unitToken } from "../../test/support/token-meta.js";

function tokenMeta(over: Partial<TokenMeta> = {}): TokenMeta {
  return unitToken({ provider: "gemini", upstreamKey: "k", budgetTokens: 100_000, ...over });
}

const predict = (body: unknown, path = "/v1beta/models/imagen-4.0-generate-001:predict") => ({
  path,
  origin: undefined,
  body: Buffer.from(JSON.stringify(body)),
});
const instance = { prompt: "a cat" };

describe("Imagen and Veo on a charged token", () => {
  it("counts every sample of every instance as a choice, and the reservation with them", () => {
    const token = tokenMeta();
    const cases: [unknown, number][] = [
      [{ instances: [instance], parameters: { sampleCount: 3 } }, 3],
      [{ instances: [instance, instance], parameters: { sample_count: 2 } }, 4],
      [{ instances: [instance, instance] }, 8],
      [{ instances: [instance], parameters: { sampleCount: 1 } }, 1],
    ];
    for (const [body, choices] of cases) {
      const checked = checkPolicy(token, gemini, predict(body), true);
      expect(checked.choices, JSON.stringify(body)).toBe(choices);
      expect(callBounds({ ...checked, bodyBytes: checked.body.length }).output).toBe(DEFAULT_OUTPUT_RESERVE * choices);
    }
    const veo = checkPolicy(
      token,
      gemini,
      predict({ instances: [instance], parameters: { sampleCount: 2 } }, "/v1beta/models/veo-3.0-generate-001:predictLongRunning"),
      true,
    );
    expect(veo.choices).toBe(2);
    // Escaped as some clients send the custom method's colon.
    expect(checkPolicy(token, gemini, predict({ instances: [instance] }, "/v1beta/models/imagen-4.0-generate-001%3Apredict"), true).choices).toBe(4);
  });

  it("refuses above max_n, and the pin holds the path's model", () => {
    const refused = (token: TokenMeta, body: unknown, path?: string): string => {
      try {
        checkPolicy(token, gemini, predict(body, path), false);
      } catch (e) {
        if (e instanceof RelayError) return `${e.code}: ${e.message}`;
        throw e;
      }
      return "admitted";
    };
    const capped = tokenMeta({ maxN: 2, budgetTokens: null });
    expect(refused(capped, { instances: [instance, instance, instance], parameters: { sampleCount: 1 } })).toBe(
      "permission_denied: n above this token's cap: the count is per instance",
    );
    expect(refused(capped, { instances: [instance] })).toBe(
      "permission_denied: n above this token's cap: the provider's default count applies when the body names none",
    );
    expect(refused(capped, { instances: [instance] }, "/v1beta/models/imagen-4.0-generate-001%3Apredict")).toMatch(/^permission_denied: n above/);
    expect(refused(capped, { instances: [instance, instance], parameters: { sampleCount: 1 } })).toBe("admitted");
    expect(refused(capped, { instances: [instance], Parameters: { sampleCount: 8 } })).toMatch(/^bad_request/);
    const pinned = tokenMeta({ models: new Set(["gemini-2.5-flash"]), budgetTokens: null });
    expect(refused(pinned, { instances: [instance], parameters: { sampleCount: 1 } })).toBe("permission_denied: model not allowed for this token");
  });
});
