/**
 * Providers are data plus small pure functions (DESIGN 7). Shared code only ever talks to these
 * interfaces; each provider's or API shape's quirks stay in its own module.
 */
import type { RelayError } from "../errors.js";
import type { ShapePolicy } from "../policy/shape-policy.js";
import type { OwnedObjectRules } from "./owned-objects.js";
import type { ShapeName } from "./shape-name.js";

export type { ShapeName } from "./shape-name.js";

/** How the upstream credential travels. */
export type CredentialStyle = { kind: "bearer" } | { kind: "header"; name: string } | { kind: "query"; name: string };

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /**
   * Parts of the above the provider reports separately, for prices (issue 24); absent when not
   * reported. `cachedTokens`: prompt tokens read from the provider's cache; `cacheWriteTokens`:
   * prompt tokens written to it (Anthropic); `reasoningTokens`: completion tokens spent reasoning;
   * `audioInputTokens`/`audioOutputTokens`: audio parts of the prompt and completion.
   */
  cachedTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
  audioInputTokens?: number;
  audioOutputTokens?: number;
  /**
   * The service tier the answer says served the call (OpenAI's `service_tier`: "default",
   * "priority", "flex", "auto"; Anthropic's `usage.service_tier`: "standard", "priority",
   * "batch"); absent when it names none. Prices tell the tiers apart (src/pricing/tiers.ts).
   */
  serviceTier?: string;
}

/** Reads usage from a response as its bytes go by; never holds a chunk back. */
export interface UsageMeter {
  feed(chunk: Buffer): void;
  /** Usage seen so far, when the provider reported any. */
  result(): Usage | undefined;
}

/**
 * Where an API names the model a request runs on (issue 18, finding 1). Model pins are checked,
 * and usage recorded, against the model found here: the one the provider will run.
 */
export interface ModelLocation {
  /**
   * The model the path names (Gemini's `/models/<m>:…`, Azure's `/deployments/<d>/…`), read
   * from the relay's normal path (src/relay/upstream-url.ts). Where it names one, the path wins:
   * the provider routes by it, so a body `model` is only allowed to repeat it under a pin.
   */
  inPath?(path: string): string | undefined;
  /** Whether a top-level body `model` names the model where the path names none. */
  inBody: boolean;
  /**
   * Top-level body fields with which the provider may run another model than the one named
   * (fallback lists, presets, agents): refused under a pin when present and not null.
   */
  rerouting?: readonly string[];
}

/** The wire format family of an API: its error body, where it names its model, its usage reports. */
export interface ApiShape {
  name: ShapeName;
  /** JSON error body in this API's own shape, so client SDKs show it well. */
  errorBody(err: RelayError): string;
  /** Where requests of this shape name their model (a provider may say otherwise: ProviderSpec.models). */
  models: ModelLocation;
  /** Which body fields the request policy checks, caps and sets (src/policy). */
  policy: ShapePolicy;
  /**
   * The model list (`GET /v1/models`) answers `{data: [{id}]}`: on a pinned token it is
   * filtered to the pinned models instead of refused (src/relay/answer-filters.ts).
   */
  modelList?: boolean;
  /**
   * Resumable uploads (Gemini's Files API; issue 25): on `rawPaths`, the bytes of an upload
   * command stream through unread whatever their type, and the answer headers `urlHeaders`
   * (lower case) carry an upload URL that the relay points back at itself (src/relay/upload-url.ts).
   */
  uploads?: { rawPaths: RegExp; urlHeaders: readonly string[] };
  /**
   * Objects the provider stores for later calls (responses, files; issue 25): only tokens of
   * the subject that created one may reach it (src/relay/object-ownership.ts).
   */
  objects?: OwnedObjectRules;
  /** A meter for one response with this content type. */
  meter(contentType: string | undefined): UsageMeter;
  /**
   * POST calls whose answer is a stored object, not new work (OpenAI's `/responses/{id}/cancel`
   * answers the response with the usage its create was charged): not metered, as a GET is not.
   */
  storedReads?: readonly RegExp[];
  /**
   * True when a parsed error body says the upstream key itself is invalid (revoked, mistyped,
   * expired): a strike against a pool key (DESIGN 8). Reads only fields the provider sets,
   * never message text, which may echo the client's own input.
   */
  keyInvalid?(body: unknown): boolean;
}

export interface ProviderSpec {
  id: string;
  /** Upstream root; the client's path below `/api/<id>` is appended to it. */
  baseUrl: string;
  credential: CredentialStyle;
  defaultHeaders: Readonly<Record<string, string>>;
  /** The field an inserted output cap goes in, when not the shape's default (src/policy). */
  outputCapField?: string;
  /** Query parameters added when the client did not send them (e.g. Azure's `api-version`). */
  defaultQuery?: Readonly<Record<string, string>>;
  shape: ApiShape;
  /** Where this provider's requests name their model, when not where its shape says. */
  models?: ModelLocation;
  /**
   * Paths (normal form) no token may call: the provider's administration, which acts on what
   * every token shares (Ollama's model management on the relay's own machine).
   */
  adminPaths?: readonly RegExp[];
  /** WebSocket sessions it serves (issue 25); none when absent. */
  websocket?: WebSocketSpec;
  builtin: boolean;
}

/**
 * The paths (below the provider root, normal form) that upgrade to a WebSocket session, and
 * the framing its messages are read with for model pins and usage (src/realtime/framing.ts).
 */
export interface WebSocketSpec {
  paths: readonly RegExp[];
  framing: "openai-realtime" | "gemini-live";
}

/** Where a provider's requests name the model they run on. */
export function modelLocationOf(provider: ProviderSpec): ModelLocation {
  return provider.models ?? provider.shape.models;
}

export const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
