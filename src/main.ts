/** loadConfig -> build(config) -> listen -> graceful shutdown on SIGTERM/SIGINT. */
import cluster from "node:cluster";
import { HURRY_MESSAGE, SHUTDOWN_MESSAGE } from "./cluster/messages.js";
import { loadConfig, type ConfigOverrides, type LoadOptions } from "./config.js";
import { createLogger } from "./log.js";
import { SHUTDOWN_MARGIN_MS } from "./shutdown-margin.js";
import { shouldPrintStartupLine, startupLine } from "./startup-line.js";
import { tuneHeap } from "./v8-tuning.js";

/**
 * The signals that shut the relay down gracefully. SIGHUP too (the terminal that started it
 * closed, an ssh session ended): Node's default for it is to die on the spot, which cut the
 * streams in flight and lost the queued usage rows (test/probe-cluster-signals.test.ts).
 */
export const SHUTDOWN_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;

/**
 * Runs the relay until SIGTERM, SIGINT or SIGHUP, then shuts down gracefully (issue 19): `/readyz` 503
 * for `drainDelayMs` while the listener still accepts, then stop accepting, let in-flight calls
 * and streams finish until `shutdownGraceMs` after the signal (streams still open then end with
 * an error event), give back leased calls and write the usage records within SHUTDOWN_MARGIN_MS
 * more (what is not written is spilled to the data directory), close the pools; exit 0 (1 when
 * the shutdown itself failed).
 *
 * A second SIGTERM or SIGINT hurries: no more drain delay or grace, open streams end at once
 * (with their error event and records), leases and usage still get the margin, so nothing is
 * lost; further signals are ignored (SIGKILL remains).
 */
export async function serve(overrides: ConfigOverrides = {}, opts: LoadOptions = {}): Promise<void> {
  const config = loadConfig(overrides, process.env, opts);
  tuneHeap();
  const log = createLogger(config.logLevel);
  if (config.workers > 1 && cluster.isPrimary) {
    // `--workers N`: this process supervises; the workers run the code below (src/cluster/).
    const { servePrimary } = await import("./cluster/primary.js");
    await servePrimary(config, log, {
      signals: SHUTDOWN_SIGNALS,
      shutdownDeadlineMs: config.shutdownGraceMs + SHUTDOWN_MARGIN_MS + 10_000,
      onListening: (url) => {
        log.info("relay listening", { url, workers: config.workers, database: config.databaseUrl === undefined ? `pglite:${config.dataDir}` : "postgres" });
        if (shouldPrintStartupLine(process.stderr)) {
          process.stderr.write(
            startupLine({ url, dataDir: config.dataDir, adminKeyConfigured: config.adminKey !== undefined && config.adminKey !== "", cwd: process.cwd() }) +
              "\n",
          );
        }
      },
    });
    return;
  }
  // A worker hears its primary from the start: a shutdown asked while it starts (a rollout that
  // replaces a relay just started) is kept and obeyed once it listens, never lost.
  const primary = cluster.isWorker ? primaryRequests() : undefined;
  if (cluster.isWorker) {
    // Answered from the start: the primary kills a worker that stays silent (src/cluster/worker-heartbeat.ts).
    const { answerPings } = await import("./cluster/worker-heartbeat.js");
    answerPings();
  }
  // Loaded here: the primary of `--workers N` only forks and supervises, and the relay's code
  // (Connect, prom-client, the console, the providers...) would be ~40 MB of it (src/cluster/).
  const { build } = await import("./server.js");
  const app = await build(config, { log });
  await app.listen();
  // Announced once the signal handlers are in place: whoever reads "relay listening" may send
  // SIGTERM at once (a signal before the handlers would kill the process without a shutdown).
  const announce = (): void => {
    if (cluster.isWorker) log.info("worker listening", { worker: cluster.worker?.id, pid: process.pid });
    else
      log.info("relay listening", {
        url: app.url,
        database: app.database.driver === "pglite" ? `pglite:${config.dataDir}` : "postgres",
      });
    // One human line for whoever started it in a terminal (src/startup-line.ts).
    if (!cluster.isWorker && shouldPrintStartupLine(process.stderr)) {
      process.stderr.write(
        startupLine({
          url: app.url,
          dataDir: config.dataDir,
          adminKeyConfigured: config.adminKey !== undefined && config.adminKey !== "",
          cwd: process.cwd(),
        }) + "\n",
      );
    }
  };
  let stopping = false;
  const hurry = new AbortController();
  const stop = (signal: string): void => {
    if (stopping) {
      if (hurry.signal.aborted) return;
      log.warn("shutting down now", { signal });
      hurry.abort();
      return;
    }
    stopping = true;
    const started = Date.now();
    log.info("shutting down", { signal, graceMs: config.shutdownGraceMs, drainDelayMs: config.drainDelayMs });
    // Every step of close() is bounded; this only guards against a bug holding the exit.
    setTimeout(
      () => {
        log.error("shutdown overran its deadline", { ms: Date.now() - started });
        process.exit(1);
      },
      config.shutdownGraceMs + SHUTDOWN_MARGIN_MS + 5_000,
    ).unref();
    app.close({ drainDelayMs: config.drainDelayMs, hurry: hurry.signal }).then(
      () => {
        log.info("shut down", { ms: Date.now() - started, usageDropped: app.usage.dropped, usageSpilled: app.usage.spilled });
        process.exit(0);
      },
      (e: unknown) => {
        log.error("shutdown failed", { err: e });
        process.exit(1);
      },
    );
  };
  if (primary !== undefined) {
    // A worker obeys its primary: a signal sent to the whole group (Ctrl-C, systemd's
    // control-group kill) arrives beside the primary's request and must not count as a second
    // one. Only the primary's "hurry" (its own second signal) hurries.
    const gently = (why: string): void => {
      if (!stopping) stop(why);
    };
    for (const signal of SHUTDOWN_SIGNALS) process.on(signal, () => gently(signal));
    announce();
    primary.deliver({ shutdown: () => gently("primary"), hurry: () => stop("primary (hurry)"), gone: () => gently("primary gone") });
    return;
  }
  for (const signal of SHUTDOWN_SIGNALS) process.on(signal, () => stop(signal));
  announce();
}

interface PrimaryRequests {
  shutdown(): void;
  hurry(): void;
  gone(): void;
}

/**
 * A worker shuts down when its primary asks (a second request hurries it, as a second signal
 * does) or disappears: without the primary no connection reaches it, and nothing would stop it.
 * Listened for from the worker's start; what comes before `deliver` is kept and delivered then.
 *
 * A primary that disappears (kill -9, the OOM killer) gets the same graceful shutdown: the
 * streams in flight finish and the usage the worker cannot write (the embedded database went
 * with the primary) is spilled for the next start. Node's cluster would instead exit the worker
 * at once (process.exit(0) after the worker's 'disconnect' event unless `exitedAfterDisconnect`),
 * cutting its streams and losing its queued usage rows: the flag is set in that event, before
 * Node looks at it (test/probe-cluster-primary-kill.test.ts).
 */
function primaryRequests(): { deliver(on: PrimaryRequests): void } {
  let on: PrimaryRequests | undefined;
  const early: Array<keyof PrimaryRequests> = [];
  const request = (what: keyof PrimaryRequests): void => {
    if (on === undefined) early.push(what);
    else on[what]();
  };
  process.on("message", (m: unknown) => {
    if (m === SHUTDOWN_MESSAGE) request("shutdown");
    else if (m === HURRY_MESSAGE) request("hurry");
  });
  const worker = cluster.worker;
  if (worker === undefined) process.on("disconnect", () => request("gone"));
  else
    worker.on("disconnect", () => {
      worker.exitedAfterDisconnect = true;
      request("gone");
    });
  return {
    deliver(handlers) {
      on = handlers;
      for (const what of early.splice(0)) handlers[what]();
    },
  };
}
