/**
 * The per-file fixture most suites share: `useRelay()` registers the beforeAll that starts the
 * mock provider and the relay (startRelay) and the afterAll that closes both, and returns live
 * views of them to use in tests. Call it at the top of a file or a describe block; hooks a file
 * registers after it run after the relay started, and their afterAll runs before it closes
 * (vitest runs after-hooks in reverse order).
 *
 *   const { relay, mock } = useRelay({ config: { maxBodyBytes: 4096 } });
 *   it("...", async () => { const { secret } = await relay.issue(); ... mock.requests ... });
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll } from "vitest";
import type { ConfigOverrides } from "../../src/config.js";
import type { Logger } from "../../src/log.js";
import { BUILTIN_PROVIDERS } from "../../src/providers/builtin/index.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./databases.js";
import { startMockProvider, type MockOptions, type MockProvider } from "./mock-provider.js";
import { late } from "./late.js";
import { startRelay, type Driver, type TestRelay } from "./relay.js";

export interface UseRelayOptions {
  /** The database the relay runs on (default pglite); see `availableDrivers()`. */
  driver?: Driver;
  /** Options of the mock provider this fixture starts; `false` for no mock provider. */
  mock?: MockOptions | false;
  /** A mock provider started elsewhere (e.g. by `useMockProvider`) to use instead; not closed here. */
  sharedMock?: MockProvider;
  /** Config overrides, or a function building them once the mock provider (if any) listens. */
  config?: ConfigOverrides | ((mock: MockProvider) => ConfigOverrides | Promise<ConfigOverrides>);
  /** The relay's logger (default: silent). */
  log?: Logger;
  /** The clock of plan quota windows (src/plans/quota-windows.ts): tests cross midnight without waiting. */
  quotaClock?: () => number;
  /**
   * Points every built-in provider at the mock, under its own base path (/openai/v1, /v1beta, ...),
   * not only openai, anthropic and gemini.
   */
  allProviders?: boolean;
}

export interface RelayFixture {
  /** The running relay; valid from the fixture's beforeAll on. */
  relay: TestRelay;
  /** The mock provider the relay's built-in providers point at (throws when there is none). */
  mock: MockProvider;
}

/** Starts a mock provider for the file (or describe block) and closes it afterwards. */
export function useMockProvider(opts: MockOptions = {}): MockProvider {
  let mock: MockProvider | undefined;
  beforeAll(async () => {
    mock = await startMockProvider(opts);
  });
  afterAll(async () => {
    await mock?.close();
  });
  return late("the mock provider", () => mock);
}

/** Starts the relay (and a mock provider unless `mock: false`) for the file or describe block. */
export function useRelay(opts: UseRelayOptions = {}): RelayFixture {
  const hasMock = opts.sharedMock !== undefined || opts.mock !== false;
  let ownMock: MockProvider | undefined;
  let relay: TestRelay | undefined;
  const mock = opts.sharedMock ?? late("the mock provider", () => ownMock);
  beforeAll(async () => {
    if (opts.sharedMock === undefined && opts.mock !== false) ownMock = await startMockProvider(opts.mock ?? {});
    let config = typeof opts.config === "function" ? await opts.config(mock) : opts.config;
    if (opts.allProviders) {
      const providerBaseUrls = Object.fromEntries(BUILTIN_PROVIDERS.map((p) => [p.id, mock.url + new URL(p.baseUrl).pathname.replace(/\/$/, "")]));
      config = { ...config, providerBaseUrls: { ...providerBaseUrls, ...config?.providerBaseUrls } };
    }
    relay = await startRelay({ driver: opts.driver, mock: hasMock ? mock : undefined, config, log: opts.log, quotaClock: opts.quotaClock });
  });
  afterAll(async () => {
    await relay?.close();
    await ownMock?.close();
  });
  return { relay: late("the relay", () => relay), mock };
}

export interface ClusterFixture {
  a: TestRelay;
  b: TestRelay;
  mock: MockProvider;
  /** The PostgreSQL database both instances share. */
  database: TestDatabase;
}

/**
 * Two relay instances as one deployment: one fresh PostgreSQL database, one master key and one
 * admin key, one mock provider (`mock: false` is ignored: both need one). `config` (object or
 * function) adds to what they share.
 */
export function useCluster(opts: Pick<UseRelayOptions, "mock" | "config" | "allProviders" | "quotaClock"> = {}): ClusterFixture {
  let database: TestDatabase | undefined;
  const shared = { masterKey: randomBytes(32).toString("base64url"), adminKey: "rak_" + randomBytes(16).toString("hex") };
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });
  const mock = useMockProvider(opts.mock || {});
  const config = async (m: MockProvider): Promise<ConfigOverrides> => ({
    ...shared,
    databaseUrl: database!.url,
    ...(typeof opts.config === "function" ? await opts.config(m) : opts.config),
  });
  const { relay: a } = useRelay({ ...opts, mock: undefined, sharedMock: mock, config });
  const { relay: b } = useRelay({ ...opts, mock: undefined, sharedMock: mock, config });
  return { a, b, mock, database: late("the database", () => database) };
}

/** The drivers a suite that runs on both databases runs on: PostgreSQL only when it answers. */
export async function availableDrivers(): Promise<Driver[]> {
  return (await postgresAvailable()) ? ["pglite", "postgres"] : ["pglite"];
}
