/** The logger: JSON lines with string levels, level filtering, masking, pino redaction, readable errors. */
import { describe, expect, it } from "vitest";
import { createLogger, fatalLine, REDACTED_NAMES } from "./log.js";

function collect(level: Parameters<typeof createLogger>[0]) {
  const lines: string[] = [];
  return { log: createLogger(level, (l) => lines.push(l)), lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe("createLogger", () => {
  it("writes one JSON object per line with level, time, msg and the fields", () => {
    const { log, lines, parsed } = collect("info");
    log.info("hello", { requestId: "r-1", n: 2 });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    expect(parsed()[0]).toMatchObject({ level: "info", msg: "hello", requestId: "r-1", n: 2, time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
  });

  it("drops lines below its level", () => {
    const { log, parsed } = collect("warn");
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    expect(parsed().map((l) => l.level)).toEqual(["warn", "error"]);
    const silent = collect("silent");
    silent.log.error("x");
    expect(silent.lines).toEqual([]);
  });

  it("masks secret-looking fields, redacts token carriers and keys at any of the first levels, and reduces errors", () => {
    const { log, lines } = collect("debug");
    const secrets = ["rai_SECRET_TOKEN", "sk-UPSTREAM-KEY", "goog-KEY", "sess=COOKIE", "PASSWORD-1"];
    const err = new Error(`fetch https://api.example/v1?key=${secrets[1]} failed`);
    log.error("boom", {
      tokenId: "tok_1",
      keyId: "key_1",
      token: secrets[0],
      err,
      headers: { authorization: `Bearer ${secrets[0]}`, "x-api-key": secrets[1], "x-goog-api-key": secrets[2], cookie: secrets[3], accept: "text/plain" },
      request: { options: { upstreamKey: secrets[1], password: secrets[4] } },
    });
    const text = lines.join("");
    for (const s of secrets) expect(text).not.toContain(s);
    const entry = JSON.parse(lines[0]!) as {
      tokenId: string;
      keyId: string;
      token: string;
      err: unknown;
      headers: Record<string, string>;
      request: { options: Record<string, string> };
    };
    expect(entry.tokenId).toBe("tok_1"); // ids are not secrets
    expect(entry.keyId).toBe("key_1");
    expect(entry.token).toBe("[redacted]");
    expect(entry.headers.authorization).toBe("[redacted]");
    expect(entry.headers.accept).toBe("text/plain");
    expect(entry.request.options.upstreamKey).toBe("[redacted]");
    // Readable, with the URL's query masked.
    expect(entry.err).toEqual({ name: "Error", message: "fetch https://api.example/v1?[redacted] failed" });
    expect(REDACTED_NAMES).toEqual(
      expect.arrayContaining(["authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "key", "token", "secret", "upstreamKey"]),
    );
  });

  it("writes errors as name, message and code with their causes, without secrets or query parameters", () => {
    const { log, lines, parsed } = collect("info");
    const pg = Object.assign(new Error("terminating connection due to administrator command"), { name: "PostgresError", code: "57P01" });
    const drizzle = new Error("Failed query: insert into usage_events values ($1, $2)\nparams: tok_1,sk-live-SECRET-0123456789", { cause: pg });
    drizzle.name = "DrizzleQueryError";
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED", errno: -111 });
    const agg = new AggregateError([refused], "");
    const leaky = new Error(
      "401 for Bearer rai_LEAKED0123456789abcdef at postgres://relay:hunter2@db:5432/relay with api_key=ABCDEF123 and x=QWErty0123456789QWErty0123456789",
    );
    log.warn("database down", { err: drizzle });
    log.warn("connect", { err: agg });
    log.warn("leaky", { err: leaky });
    const [a, b, c] = parsed() as { err: Record<string, unknown> }[];
    expect(a!.err).toEqual({
      name: "DrizzleQueryError",
      message: "Failed query: insert into usage_events values ($1, $2)",
      cause: { name: "PostgresError", message: "terminating connection due to administrator command", code: "57P01" },
    });
    expect(b!.err).toEqual({ name: "AggregateError", errors: [{ name: "Error", message: "connect ECONNREFUSED 127.0.0.1:5432", code: "ECONNREFUSED" }] });
    const text = lines.join("");
    for (const s of ["SECRET-0123456789", "LEAKED0123456789", "hunter2", "ABCDEF123", "QWErty0123456789QWErty0123456789"]) expect(text).not.toContain(s);
    expect(c!.err.message).toContain("postgres://[redacted]@db:5432/relay");
  });

  it("builds a fatal start-up line in the same JSON shape", () => {
    const line = fatalLine("relay failed to start", new Error("data directory /tmp/x is in use by process 42"));
    expect(line.endsWith("\n")).toBe(true);
    expect(JSON.parse(line)).toMatchObject({
      level: "fatal",
      msg: "relay failed to start",
      pid: process.pid,
      time: expect.stringMatching(/^\d{4}-/),
      err: { name: "Error", message: "data directory /tmp/x is in use by process 42" },
    });
  });
});
