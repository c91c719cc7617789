/**
 * Providers are data plus small pure functions (DESIGN 7). Shared code only ever talks to these
 * interfaces; each provider's or API shape's quirks stay in its own module.
 */
import type { RelayError } from "../errors.js";

export type ShapeName = "openai" | "anthropic" | "gemini";

/** How the upstream credential travels. */
export type CredentialStyle =
  | { kind: "bearer" }
  | { kind: "header"; name: string }
  | { kind: "query"; name: string };

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** Reads usage from a response as its bytes go by; never holds a chunk back. */
export interface UsageMeter {
  feed(chunk: Buffer): void;
  /** Usage seen so far, when the provider reported any. */
  result(): Usage | undefined;
}

/** The wire format family of an API: its error body, its model field, its usage reports. */
export interface ApiShape {
  name: ShapeName;
  /** JSON error body in this API's own shape, so client SDKs show it well. */
  errorBody(err: RelayError): string;
  /** The model named by the path (Gemini), when the API puts it there; bodies are scanned. */
  modelInPath?(path: string): string | undefined;
  /** A meter for one response with this content type. */
  meter(contentType: string | undefined): UsageMeter;
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
  builtin: boolean;
}

export const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
