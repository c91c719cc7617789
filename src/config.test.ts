/**
 * loadConfig's layers (defaults < relayapi.config.json < environment < flags), the file's
 * validation (unknown keys and wrong types are errors naming the key), and the masking of
 * `serve --print-config`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_CONFIG_FILE, FIELDS, loadConfig, maskUrl, printableConfig } from "./config.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "relayapi-config-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(value: unknown, name = DEFAULT_CONFIG_FILE): string {
  const path = join(dir, name);
  writeFileSync(path, typeof value === "string" ? value : JSON.stringify(value));
  return path;
}

const load = (overrides = {}, env: NodeJS.ProcessEnv = {}, file?: string | false) =>
  loadConfig(overrides, env, { cwd: dir, ...(file === undefined ? {} : { configFile: file }) });

describe("layers", () => {
  it("uses the documented defaults without file, env or flags", () => {
    const c = load();
    expect(c).toMatchObject({
      host: "127.0.0.1",
      port: 8080,
      dataDir: expect.stringMatching(/\/data$/),
      databaseUrl: undefined,
      ipRpm: 600,
      maxConcurrency: 4096,
      keyConcurrency: 0,
      trustProxy: [],
      redisUrl: undefined,
      redisPerIp: false,
      leaseMax: 256,
      leaseIdleMs: 1000,
      acceptByokTokens: false,
      corsOrigins: ["*"],
      shutdownGraceMs: 10_000,
      logLevel: "info",
    });
  });

  it("reads relayapi.config.json from the working directory", () => {
    writeConfig({ port: 9001, ipRpm: 10, trustProxy: ["10.0.0.0/8"], redisPerIp: true, logLevel: "warn", providerBaseUrls: { openai: "http://127.0.0.1:1" } });
    const c = load();
    expect(c).toMatchObject({
      port: 9001,
      ipRpm: 10,
      trustProxy: ["10.0.0.0/8"],
      redisPerIp: true,
      logLevel: "warn",
      providerBaseUrls: { openai: "http://127.0.0.1:1" },
    });
  });

  it("applies defaults < file < env < flags, key by key", () => {
    writeConfig({ port: 9001, ipRpm: 10, maxConcurrency: 7, logLevel: "warn", leaseMax: 3 });
    const env = { RELAYAPI_IP_RPM: "20", RELAYAPI_MAX_CONCURRENCY: "8", RELAYAPI_LEASE_MAX: "" };
    const c = load({ maxConcurrency: 9 }, env);
    expect(c.port).toBe(9001); // file only
    expect(c.ipRpm).toBe(20); // env over file
    expect(c.maxConcurrency).toBe(9); // flag over env over file
    expect(c.logLevel).toBe("warn"); // file over default
    expect(c.leaseMax).toBe(3); // an empty variable does not count as set
    expect(c.keyConcurrency).toBe(0); // default
  });

  it("merges provider base URLs across layers, per provider", () => {
    writeConfig({ providerBaseUrls: { openai: "http://file-openai", gemini: "http://file-gemini" } });
    const c = load(
      { providerBaseUrls: { gemini: "http://flag-gemini" } },
      { RELAYAPI_PROVIDER_OPENAI_BASE_URL: "http://env-openai", RELAYAPI_PROVIDER_AZURE_OPENAI_BASE_URL: "http://env-azure" },
    );
    expect(c.providerBaseUrls).toEqual({ openai: "http://env-openai", gemini: "http://flag-gemini", "azure-openai": "http://env-azure" });
  });

  it("takes --config or RELAYAPI_CONFIG instead of the default file; a relative dataDir is relative to the file", () => {
    writeConfig({ port: 1111 });
    mkdirSync(join(dir, "etc"));
    const other = writeConfig({ port: 2222, dataDir: "state" }, join("etc", "relay.json"));
    expect(load({}, {}, other)).toMatchObject({ port: 2222, dataDir: join(dir, "etc", "state") });
    expect(load({}, { RELAYAPI_CONFIG: other }).port).toBe(2222);
    expect(load({}, {}, false).port).toBe(8080);
    expect(() => load({}, {}, join(dir, "missing.json"))).toThrow(/config file .*missing\.json does not exist/);
  });

  it("treats an empty list in the environment as the empty list", () => {
    writeConfig({ trustProxy: ["10.0.0.1"], corsOrigins: ["https://a.example"] });
    const c = load({}, { RELAYAPI_TRUST_PROXY: "", RELAYAPI_CORS_ORIGINS: "https://b.example, https://c.example" });
    expect(c.trustProxy).toEqual([]);
    expect(c.corsOrigins).toEqual(["https://b.example", "https://c.example"]);
  });
});

describe("errors name the key", () => {
  const cases: [string, unknown, RegExp][] = [
    ["an unknown key", { ipRpmm: 5 }, /unknown key "ipRpmm"/],
    ["a string for a number", { ipRpm: "5" }, /"ipRpm" must be a non-negative integer/],
    ["a negative number", { leaseIdleMs: -1 }, /"leaseIdleMs" must be a non-negative integer/],
    ["a fraction", { port: 80.5 }, /"port" must be a non-negative integer/],
    ["a string for a list", { trustProxy: "10.0.0.1" }, /"trustProxy" must be an array of strings/],
    ["a string for a boolean", { redisPerIp: "yes" }, /"redisPerIp" must be true or false/],
    ["a bad log level", { logLevel: "verbose" }, /"logLevel" must be one of silent, error, warn, info, debug/],
    ["a number for a URL", { databaseUrl: 5 }, /"databaseUrl" must be a string/],
    ["a provider URL that is not a string", { providerBaseUrls: { openai: 1 } }, /"providerBaseUrls"\.openai must be a string/],
    ["an array at the top", [1], /must hold a JSON object/],
    ["broken JSON", "{ port: 1 }", /cannot read config file/],
  ];
  for (const [name, value, message] of cases) {
    it(`refuses ${name} in the file`, () => {
      writeConfig(value);
      expect(() => load()).toThrow(ConfigError);
      expect(() => load()).toThrow(message);
    });
  }

  it("validates the merged result whatever layer a value came from", () => {
    writeConfig({ leaseMax: 0 });
    expect(() => load()).toThrow(/leaseMax \(RELAYAPI_LEASE_MAX\) must be at least 1/);
    expect(() => load({}, { RELAYAPI_PORT: "70000" }, false)).toThrow(/port \(RELAYAPI_PORT\) must be 0-65535/);
    // Past 2^31-1 ms a Node timer fires at once: a "very long" timeout would end everything at once.
    expect(() => load({}, { RELAYAPI_REQUEST_TIMEOUT_MS: "3000000000" }, false)).toThrow(
      /requestTimeoutMs \(RELAYAPI_REQUEST_TIMEOUT_MS\) must be at most 2147483647 ms/,
    );
    expect(() => load({}, { RELAYAPI_MAX_SESSION_SECONDS: "3000000" }, false)).toThrow(
      /maxSessionSeconds \(RELAYAPI_MAX_SESSION_SECONDS\) must be at most 2147483 s/,
    );
    expect(() => load({}, { RELAYAPI_SESSION_IDLE_MS: "2147483647" }, false)).not.toThrow();
    expect(() => load({}, { RELAYAPI_IP_RPM: "many" }, false)).toThrow(/RELAYAPI_IP_RPM must be a non-negative integer/);
    expect(() => load({ redisUrl: "http://redis" }, {}, false)).toThrow(/redisUrl \(REDIS_URL\) must start with redis:\/\//);
    expect(() => load({}, { RELAYAPI_TRUST_PROXY: "not-an-ip" }, false)).toThrow(/trustProxy \(RELAYAPI_TRUST_PROXY\) must list IP addresses or CIDRs/);
    expect(() => load({}, { RELAYAPI_REDIS_PER_IP: "maybe" }, false)).toThrow(/RELAYAPI_REDIS_PER_IP must be true or false/);
  });

  it("refuses a base URL for a provider id that is not built in, naming it and the known ids", () => {
    const unknown = /unknown provider "opneai" in providerBaseUrls \(RELAYAPI_PROVIDER_<ID>_BASE_URL\); known: .*\bopenai\b.*\bazure-openai\b/;
    expect(() => load({}, { RELAYAPI_PROVIDER_OPNEAI_BASE_URL: "http://x" }, false)).toThrow(ConfigError);
    expect(() => load({}, { RELAYAPI_PROVIDER_OPNEAI_BASE_URL: "http://x" }, false)).toThrow(unknown);
    writeConfig({ providerBaseUrls: { opneai: "http://x" } });
    expect(() => load()).toThrow(unknown);
    // A dash in an id is an underscore in the variable's name.
    expect(load({}, { RELAYAPI_PROVIDER_AZURE_OPENAI_BASE_URL: "http://azure" }, false).providerBaseUrls).toEqual({ "azure-openai": "http://azure" });
  });

  it("has a file key and an environment variable for every field", () => {
    for (const [key, field] of Object.entries(FIELDS)) {
      expect(field.env, key).toMatch(/^(RELAYAPI_[A-Z0-9_<>]+|DATABASE_URL|REDIS_URL)$/);
    }
  });
});

describe("print-config", () => {
  it("masks the admin and master keys and the passwords of database and Redis URLs", () => {
    const c = load(
      {},
      {
        RELAYAPI_ADMIN_KEY: "rak_admin-secret-1234",
        RELAYAPI_MASTER_KEY: "bWFzdGVyLXNlY3JldC1tYXN0ZXItc2VjcmV0LTEyMzQ",
        DATABASE_URL: "postgres://relay:pg-pass-5678@db.internal:5432/relay?sslmode=require",
        REDIS_URL: "redis://:redis-pass-9012@cache.internal:6379/0",
        RELAYAPI_PROVIDER_OPENAI_BASE_URL: "https://proxy.example/v1?api_key=prov-secret-3456",
      },
      false,
    );
    const printed = JSON.stringify(printableConfig(c));
    for (const secret of ["rak_admin-secret-1234", "bWFzdGVy", "pg-pass-5678", "redis-pass-9012", "prov-secret-3456"]) {
      expect(printed).not.toContain(secret);
    }
    const p = printableConfig(c);
    expect(p.adminKey).toBe("[redacted]");
    expect(p.masterKey).toBe("[redacted]");
    expect(p.databaseUrl).toBe("postgres://relay:****@db.internal:5432/relay?sslmode=require");
    expect(p.redisUrl).toBe("redis://:****@cache.internal:6379/0");
    expect(p.ipRpm).toBe(600);
  });

  it("prints unset secrets as null and leaves URLs without a secret unchanged", () => {
    const p = printableConfig(load({}, {}, false));
    expect(p.adminKey).toBeNull();
    expect(p.databaseUrl).toBeNull();
    expect(maskUrl("http://127.0.0.1:9000")).toBe("http://127.0.0.1:9000");
    expect(maskUrl("not a url with a secret")).toBe("[redacted]");
  });
});
