import { describe, expect, it } from "vitest";
import { shouldPrintStartupLine, startupLine } from "./startup-line.js";

describe("start-up line", () => {
  it("is printed only when stderr is a terminal", () => {
    expect(shouldPrintStartupLine({ isTTY: true })).toBe(true);
    expect(shouldPrintStartupLine({ isTTY: false })).toBe(false);
    expect(shouldPrintStartupLine({})).toBe(false);
  });

  it("names the URL, the console and the admin key file relative to the working directory", () => {
    expect(startupLine({ url: "http://127.0.0.1:8080", dataDir: "/srv/app/data", adminKeyConfigured: false, cwd: "/srv/app" })).toBe(
      "RelayAPI listening on http://127.0.0.1:8080 — console at /console — admin key in ./data/admin.key",
    );
    expect(startupLine({ url: "http://127.0.0.1:9", dataDir: "/var/lib/relayapi", adminKeyConfigured: false, cwd: "/srv/app" })).toContain(
      "admin key in /var/lib/relayapi/admin.key",
    );
    expect(startupLine({ url: "http://127.0.0.1:9", dataDir: "/x", adminKeyConfigured: true, cwd: "/" })).toContain("admin key from the configuration");
  });
});
