/**
 * What the request policy needs to know about an API shape (issue 20, move 4): which fields
 * carry tools, output caps and choice counts, where a cap is inserted, which option makes a
 * stream report usage. Each shape declares this as data beside its error body and usage meter
 * (src/providers/shapes/*.ts, `ApiShape.policy`), so the policy code never names a provider.
 */

/** An object option that makes a stream report usage (`stream_options: {include_usage: true}`). */
export interface UsageOption {
  field: string;
  key: string;
}

/** A generation endpoint: the only place an absent output cap is inserted. */
export interface GenerationEndpoint {
  /** Matched against the path as the upstream routes it: lower case, unescaped, no query or trailing slash. */
  path: RegExp;
  /** The field an absent cap is inserted as (a provider may say otherwise: ProviderSpec.outputCapField). */
  capField: string;
  /** Set where streams report usage only when asked: the relay asks, so every stream is metered. */
  usageOption?: UsageOption;
}

export interface ShapePolicy {
  /** The generation endpoints, first match wins; every other path gets no inserted cap. */
  endpoints: readonly GenerationEndpoint[];
  /** Fields that give a model tools, functions or extra capabilities: refused unless the token allows tools. */
  toolFields: readonly string[];
  /** Output caps: each present one must be a number at or below the token's cap. */
  capFields: readonly string[];
  /** Choice counts (`n`): each multiplies the generated tokens, and is capped by the token's maxN. */
  choiceFields: readonly string[];
  /**
   * The object the caps and choice counts live in, under any one of these names (the first is
   * the one inserted); absent: the top level of the body.
   */
  capsIn?: readonly string[];
  /** The top-level field that turns streaming on; absent when the path says it. */
  streamField?: string;
  /**
   * Where a body brings input it does not hold (a stored response, a file or image by
   * reference, a cached context, a tool that adds what it finds to the prompt): each as it
   * appears in the JSON text, a key (`"file_id"`) or the start of a value (`"web_search`).
   * Such a call's budget reservation counts a whole context (src/tokens/budget-reservations.ts).
   */
  remoteInput: readonly string[];
}

/** Whether this shape's streams report usage only when the request asks (then the relay must read the body). */
export function asksForUsage(policy: ShapePolicy): boolean {
  return policy.endpoints.some((e) => e.usageOption !== undefined);
}
