/** The headless Chromium the browser tests drive (Debian's `chromium`), and how they start it. */
import { existsSync } from "node:fs";

export const CHROMIUM = "/usr/bin/chromium";
/** Set in CI: a missing browser fails the browser tests instead of skipping them. */
export const REQUIRE_BROWSER = process.env.RELAYAPI_REQUIRE_BROWSER === "1";
export const HAVE_BROWSER = existsSync(CHROMIUM);
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
