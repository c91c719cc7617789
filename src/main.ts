/** loadConfig -> build(config) -> listen -> graceful shutdown on SIGTERM/SIGINT. */
import { loadConfig, type ConfigOverrides, type LoadOptions } from "./config.js";
import { createLogger } from "./log.js";
import { build } from "./server.js";
import { tuneHeap } from "./v8-tuning.js";

/**
 * Runs the relay until SIGTERM or SIGINT, then shuts down gracefully: stop accepting, let
 * in-flight calls and streams finish up to `shutdownGraceMs`, give back leased calls, flush the
 * usage records, close the pools; exit 0 (1 when the shutdown itself failed).
 */
export async function serve(overrides: ConfigOverrides = {}, opts: LoadOptions = {}): Promise<void> {
  const config = loadConfig(overrides, process.env, opts);
  tuneHeap();
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
    const started = Date.now();
    log.info("shutting down", { signal, graceMs: config.shutdownGraceMs });
    app.close().then(
      () => {
        log.info("shut down", { ms: Date.now() - started, usageDropped: app.usage.dropped });
        process.exit(0);
      },
      (e: unknown) => {
        log.error("shutdown failed", { err: e });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
