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
  /**
   * A top-level array each element of which is generated for on its own (Imagen's and Veo's
   * `instances`, one prompt each): the choices asked for are per element, and the token's maxN
   * caps, and a budget reserves, their product.
   */
  choicesPer?: string;
  /** The choices the provider makes when the body names none (Imagen's 4 images); absent: 1. */
  defaultChoices?: number;
  /**
   * Top-level fields that hold the provider host's memory past the call, shared by every token
   * (Ollama's `keep_alive`: a model kept loaded for as long as it says, or unloaded under other
   * callers): refused for every token unless null, as model management is (adminPaths).
   */
  hostFields?: readonly string[];
  /** The top-level field that turns streaming on; absent when the path says it. */
  streamField?: string;
  /**
   * Where a body brings input it does not hold (a stored response, a file or image by
   * reference, a cached context, a tool that adds what it finds to the prompt): each as it
   * appears in the JSON text, a key (`"file_id"`) or the start of a value (`"web_search`).
   * Such a call's budget reservation counts a whole context (src/tokens/budget-reservations.ts).
   */
  remoteInput: readonly string[];
  /**
   * Paths that create a batch: many requests the relay reads none of (an uploaded JSONL file,
   * request bodies nested in the body) as one call, run later, their usage reported later and
   * elsewhere. A token whose rules bound its calls may not create one (src/relay/token-policy.ts),
   * or its call cap, rate, pin, caps, tool ban and budget would hold only for what it did not batch.
   */
  batchPaths?: readonly RegExp[];
  /**
   * Paths no token may call, whatever the relay's options: those that mint a key or session
   * secret for the provider itself (Realtime's client secrets, Gemini's ephemeral auth tokens),
   * which reaches it past the relay's caps, meters and revocation.
   */
  refusedPaths?: readonly RegExp[];
  /**
   * Query parameters the provider reads that a client may not set (names in lower case, compared
   * so; a value matching `allow` passes). Google's system parameters are the case: a field mask
   * (`$fields`) or a binary `alt` hides the usage the relay meters, and a user project names
   * another project to bill.
   */
  refusedParams?: { query: readonly { name: string; allow?: RegExp }[] };
  /**
   * Paths served in another API's format (an OpenAI-compatible endpoint beside a native API):
   * a body there is read with that API's policy, by its field names (policyAt).
   */
  compatible?: readonly { path: RegExp; policy: ShapePolicy }[];
}

/**
 * The policy a path's body is read with: a compatible API's where its path matches (as sent or
 * with its escapes decoded, as onPaths), else the shape's own.
 */
export function policyAt(policy: ShapePolicy, path: string): ShapePolicy {
  if (policy.compatible === undefined) return policy;
  return policy.compatible.find((c) => onPath(c.path, path))?.policy ?? policy;
}

/** Whether this shape's streams report usage only when the request asks (then the relay must read the body). */
export function asksForUsage(policy: ShapePolicy): boolean {
  return policy.endpoints.some((e) => e.usageOption !== undefined);
}

/**
 * Whether a path (normal form) is one of `paths`, as sent or with its remaining escapes decoded:
 * an upstream may route `%3A` as the `:` of a custom method (`models/m%3AbatchGenerateContent`).
 */
export function onPaths(paths: readonly RegExp[] | undefined, path: string): boolean {
  return paths !== undefined && paths.some((p) => onPath(p, path));
}

function onPath(p: RegExp, path: string): boolean {
  if (p.test(path)) return true;
  if (!path.includes("%")) return false;
  try {
    return p.test(decodeURIComponent(path));
  } catch {
    return false; // safePath refused bad escapes already
  }
}
