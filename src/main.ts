/** loadConfig -> build(config) -> listen -> graceful shutdown on SIGTERM/SIGINT. */
import { loadConfig, type ConfigOverrides } from "./config.js";
import { createLogger } from "./log.js";
import { build } from "./server.js";

export async function serve(overrides: ConfigOverrides = {}): Promise<void> {
  const config = loadConfig(overrides);
  const log = createLogger(config.logLevel);
  const app = await build(config, { log });
  await app.listen();
  log.info("relay listening", {
    url: app.url,
    database: app.database.driver === "pglite" ? `pglite:${config.dataDir}` : "postgres",
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal, graceMs: config.shutdownGraceMs });
    app.close().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error("shutdown failed", { err: e });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
