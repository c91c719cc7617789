/**
 * The primary's heartbeat (src/cluster/worker-heartbeat.ts) on fake workers: a worker that stops
 * answering is reported once after the silence; one that answers never is; and a primary whose
 * own event loop stalled (PGlite runs there: a long statement, a VACUUM) does not take that
 * stall for the workers' silence, which would kill every worker at once.
 */
import cluster, { type Worker } from "node:cluster";
import { afterEach, describe, expect, it } from "vitest";
import { watchWorkers, type WorkerWatch } from "../src/cluster/worker-heartbeat.js";
import { sleep } from "./support/wait.js";

let nextId = 1000;
function fakeWorker(answers: () => boolean): Worker {
  const w = {
    id: ++nextId,
    isDead: () => false,
    isConnected: () => true,
    send: (m: unknown) => {
      if (m === "relayapi:ping" && answers()) setImmediate(() => cluster.emit("message", w, "relayapi:pong"));
      return true;
    },
  };
  return w as unknown as Worker;
}

let watch: WorkerWatch | undefined;
afterEach(() => watch?.stop());

describe("the primary's worker heartbeat", () => {
  it("reports a silent worker once, never an answering one", { timeout: 20_000 }, async () => {
    const hung: number[] = [];
    watch = watchWorkers((w) => hung.push(w.id), 2_500);
    let silent = false;
    const quiet = fakeWorker(() => !silent);
    const chatty = fakeWorker(() => true);
    watch.watch(quiet);
    watch.watch(chatty);
    await sleep(3_500);
    expect(hung).toEqual([]);
    silent = true;
    await sleep(4_500);
    expect(hung).toEqual([quiet.id]);
  });

  it("a stall of the primary's own event loop is not the workers' silence", { timeout: 20_000 }, async () => {
    const hung: number[] = [];
    watch = watchWorkers((w) => hung.push(w.id), 2_500);
    watch.watch(fakeWorker(() => true));
    watch.watch(fakeWorker(() => true));
    await sleep(1_500);
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      // the primary busy (as PGlite is on a long statement): no timer, no message runs
    }
    await sleep(2_500);
    expect(hung).toEqual([]);
  });
});
