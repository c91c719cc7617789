/**
 * The providers a request may reach: the built-in catalogue (base URLs overridable by config)
 * plus custom providers from the database. Lookups are synchronous from memory; the custom set
 * is reloaded after every local change and every `refreshMs`, so other instances' changes
 * arrive within that time. No client input ever adds a host to this set.
 */
import { PeriodicReload } from "../periodic-reload.js";
import type { Db } from "../db/client.js";
import { deleteProvider, listCustomProviders, upsertProvider } from "../db/queries/providers.js";
import type { ProviderRow } from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import { BUILTIN_PROVIDERS } from "./builtin/index.js";
import { shapeFromNumber } from "./shapes/index.js";
import { PROVIDER_ID, type CredentialStyle, type ProviderSpec } from "./types.js";

export class ProviderRegistry {
  readonly #builtins: Map<string, ProviderSpec>;
  #all: Map<string, ProviderSpec>;
  readonly #refresh = new PeriodicReload(() => this.reload());

  constructor(
    private readonly db: Db,
    baseUrlOverrides: Record<string, string>,
  ) {
    this.#builtins = new Map(BUILTIN_PROVIDERS.map((p) => [p.id, baseUrlOverrides[p.id] ? { ...p, baseUrl: baseUrlOverrides[p.id]! } : p]));
    this.#all = new Map(this.#builtins);
  }

  /** Loads custom providers and keeps them fresh every `refreshMs` (0: never). */
  start(refreshMs: number): Promise<void> {
    return this.#refresh.start(refreshMs);
  }

  stop(): void {
    this.#refresh.stop();
  }

  get(id: string): ProviderSpec | undefined {
    return this.#all.get(id);
  }

  list(): ProviderSpec[] {
    return [...this.#all.values()];
  }

  async reload(): Promise<void> {
    const rows = await listCustomProviders(this.db);
    const all = new Map(this.#builtins);
    for (const row of rows) if (!all.has(row.id)) all.set(row.id, fromRow(row));
    this.#all = all;
  }

  async upsert(row: Omit<ProviderRow, "createdAt" | "updatedAt">): Promise<ProviderSpec> {
    if (!PROVIDER_ID.test(row.id)) throw new RelayError("bad_request", "provider id must be lower case letters, digits and '-'");
    if (this.#builtins.has(row.id)) throw new RelayError("permission_denied", "built-in providers are read-only");
    // `/api/quota` is the relay's own route (issue 24): no provider may take its name.
    if (row.id === "quota") throw new RelayError("bad_request", "provider id 'quota' is reserved");
    validateBaseUrl(row.baseUrl);
    if (row.authStyle !== 1 && !/^[A-Za-z0-9-_]{1,64}$/.test(row.authName)) {
      throw new RelayError("bad_request", "auth_name must name a header or query parameter");
    }
    for (const [k, v] of Object.entries(row.defaultHeaders)) {
      if (!/^[A-Za-z0-9-]{1,64}$/.test(k) || /[\r\n\0]/.test(v)) throw new RelayError("bad_request", "invalid default header");
    }
    const stored = await upsertProvider(this.db, row);
    await this.reload();
    return fromRow(stored);
  }

  async delete(id: string): Promise<void> {
    if (this.#builtins.has(id)) throw new RelayError("permission_denied", "built-in providers are read-only");
    if (!(await deleteProvider(this.db, id))) throw new RelayError("not_found", "no such provider");
    await this.reload();
  }
}

function validateBaseUrl(raw: string): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new RelayError("bad_request", "base_url must be an absolute http(s) URL");
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.password || url.search || url.hash) {
    throw new RelayError("bad_request", "base_url must be an http(s) URL without credentials, query or fragment");
  }
}

function credentialOf(row: ProviderRow): CredentialStyle {
  if (row.authStyle === 2) return { kind: "header", name: row.authName.toLowerCase() };
  if (row.authStyle === 3) return { kind: "query", name: row.authName };
  return { kind: "bearer" };
}

export function fromRow(row: ProviderRow): ProviderSpec {
  return {
    id: row.id,
    baseUrl: row.baseUrl.replace(/\/+$/, ""),
    credential: credentialOf(row),
    defaultHeaders: row.defaultHeaders,
    shape: shapeFromNumber(row.shape),
    builtin: false,
  };
}
