/** The logger: JSON lines with string levels, level filtering, masking and pino redaction. */
import { describe, expect, it } from "vitest";
import { createLogger, REDACTED_NAMES } from "./log.js";

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
    expect(entry.err).toEqual({ name: "Error" });
    expect(REDACTED_NAMES).toEqual(expect.arrayContaining(["authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "key", "token", "secret", "upstreamKey"]));
  });
});
