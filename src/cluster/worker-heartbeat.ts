/**
 * `serve --workers N`: the primary notices a worker whose event loop stopped (an endless loop, a
 * stopped process). Such a worker never exits, so without this it kept its place for good: the
 * connection handed to it hung, every /metrics scrape waited on it, and the relay served on one
 * worker fewer with nothing in the logs. The primary pings each listening worker over the cluster
 * channel every PING_MS; a worker that has not answered for `silentMs` is reported (the primary
 * kills it with SIGKILL, as a liveness probe would, and the usual restart replaces it). The
 * answer comes from the worker's event loop, so a busy but live worker answers in time.
 */
import cluster, { type Worker } from "node:cluster";

const PING = "relayapi:ping";
const PONG = "relayapi:pong";
const PING_MS = 1_000;
/** Silence after which a worker counts as hung: far beyond any pause a live relay makes. */
export const HUNG_MS = 30_000;

/** In a worker: answers the primary's pings (from the start, so a slow start is not silence). */
export function answerPings(): void {
  process.on("message", (m: unknown) => {
    if (m === PING) process.send?.(PONG);
  });
}

export interface WorkerWatch {
  /** Starts watching `worker` (once it listens). */
  watch(worker: Worker): void;
  stop(): void;
}

/** In the primary: calls `onHung` once for a watched worker silent for `silentMs`. */
export function watchWorkers(onHung: (worker: Worker, silentMs: number) => void, silentMs = HUNG_MS): WorkerWatch {
  const heard = new Map<number, { worker: Worker; at: number }>();
  cluster.on("message", (worker: Worker, m: unknown) => {
    const seen = heard.get(worker.id);
    if (m === PONG && seen !== undefined) seen.at = Date.now();
  });
  cluster.on("exit", (worker: Worker) => heard.delete(worker.id));
  let tick = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    // A late tick means the primary itself stalled (PGlite runs on its event loop: a long
    // statement, a VACUUM), and the workers' answers wait unread behind it: that time is not
    // theirs, or one long statement in the primary would get every worker killed.
    const stalled = now - tick - PING_MS;
    tick = now;
    for (const [id, seen] of heard) {
      if (stalled > PING_MS) seen.at += stalled;
      if (seen.worker.isDead() || !seen.worker.isConnected()) continue;
      if (now - seen.at >= silentMs) {
        heard.delete(id);
        onHung(seen.worker, now - seen.at);
        continue;
      }
      seen.worker.send(PING);
    }
  }, PING_MS);
  timer.unref();
  return {
    watch: (worker) => heard.set(worker.id, { worker, at: Date.now() }),
    stop: () => {
      clearInterval(timer);
      heard.clear();
    },
  };
}
