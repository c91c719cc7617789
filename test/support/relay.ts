/**
 * Boots the real relay in-process for a test file: build() + listen on 127.0.0.1:0, on PGlite
 * (a fresh data directory) or on a fresh PostgreSQL database, with built-in providers pointed
 * at the mock provider. Helpers issue tokens through the real TokenService.
 */
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inject } from "vitest";
import { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import type { TokenLimits } from "../../gen/relayapi/v1/common_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { loadConfig, type ConfigOverrides } from "../../src/config.js";
import type { CallRecord } from "../../src/relay/engine.js";
import type { Logger } from "../../src/log.js";
import { build, type RelayApp } from "../../src/server.js";
import { createTestDatabase, type TestDatabase } from "./databases.js";
import type { MockProvider } from "./mock-provider.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TokenLimitsSchema } from "../../gen/relayapi/v1/common_pb.js";

export type Driver = "pglite" | "postgres";

export interface TestRelay {
  app: RelayApp;
  url: string;
  adminKey: string;
  dataDir: string;
  /** Calls the engine reported, in order of their end. */
  calls: CallRecord[];
  tokens: Client<typeof TokenService>;
  admin: Client<typeof AdminService>;
  /** Issues a token for `provider` (default openai) with the given upstream key and limits. */
  issue(opts?: IssueOptions): Promise<{ secret: string; id: string }>;
  close(): Promise<void>;
}

export interface IssueOptions {
  provider?: string;
  upstreamKey?: string;
  subject?: string;
  /** A plan the subject's calls count against (issue 24). */
  plan?: string;
  limits?: MessageInitShape<typeof TokenLimitsSchema>;
  expiresInSeconds?: number;
}

export interface StartOptions {
  driver?: Driver;
  mock?: MockProvider;
  config?: ConfigOverrides;
  /** The relay's logger (default: silent, from `config.logLevel`). */
  log?: Logger;
  /** The clock plan quotas' windows are read from (tests cross midnight without waiting). */
  quotaClock?: () => number;
}

export const UPSTREAM_KEY = "sk-upstream-REAL-key-0123456789abcdef";

export async function startRelay(opts: StartOptions = {}): Promise<TestRelay> {
  const dataDir = mkdtempSync(join(tmpdir(), "relayapi-test-"));
  let pg: TestDatabase | undefined;
  if (opts.driver === "postgres") pg = await createTestDatabase();
  // A PGlite relay starts from the run's migrated template (test/support/pglite-template.ts),
  // not from initdb, unless the suite names its own database or master key
  // (RELAYAPI_TEST_NO_TEMPLATE=1: every relay from initdb, as before).
  const template = process.env.RELAYAPI_TEST_NO_TEMPLATE === "1" ? undefined : inject("pgliteTemplate");
  if (pg === undefined && template && opts.config?.databaseUrl === undefined && opts.config?.masterKey === undefined) {
    cpSync(template, dataDir, { recursive: true });
  }
  const mockUrl = opts.mock?.url;
  const config = loadConfig(
    {
      dataDir,
      port: 0,
      logLevel: "silent",
      databaseUrl: pg?.url,
      adminKey: undefined,
      // Tests send bursts from one address; suites about limits turn this on themselves.
      ipRpm: 0,
      providerBaseUrls: mockUrl ? { openai: mockUrl, anthropic: mockUrl, gemini: mockUrl } : {},
      ...opts.config,
    },
    {},
    { configFile: false },
  );
  const calls: CallRecord[] = [];
  const app = await build(config, { log: opts.log, onCall: (r) => calls.push(r), quotaClock: opts.quotaClock });
  await app.listen(0, "127.0.0.1");
  const transport = createConnectTransport({
    baseUrl: app.url,
    httpVersion: "1.1",
    interceptors: [
      (next) => (req) => {
        if (!req.header.has("authorization")) req.header.set("authorization", `Bearer ${app.adminKey}`);
        return next(req);
      },
    ],
  });
  const tokens = createClient(TokenService, transport);
  const admin = createClient(AdminService, transport);
  return {
    app,
    url: app.url,
    adminKey: app.adminKey,
    dataDir,
    calls,
    tokens,
    admin,
    async issue(o: IssueOptions = {}) {
      const res = await tokens.issueToken({
        provider: o.provider ?? "openai",
        credential: { case: "upstreamKey", value: o.upstreamKey ?? UPSTREAM_KEY },
        subject: o.subject ?? "",
        plan: o.plan ?? "",
        limits: o.limits as TokenLimits | undefined,
        expiry: o.expiresInSeconds === undefined ? { case: undefined } : { case: "expiresIn", value: { seconds: BigInt(o.expiresInSeconds) } },
      });
      return { secret: res.secret, id: res.token!.id };
    },
    async close() {
      await app.close();
      await pg?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
