/**
 * The embedded database shared by the workers of `relayapi serve --workers N` (issue 22.3).
 * PGlite runs in one process and has one session; the primary owns it and serves it on a Unix
 * socket in the data directory (mode 0600 from the moment it is there), speaking the PostgreSQL wire protocol, so every
 * worker uses the PostgreSQL driver and behaves exactly as one more instance on PostgreSQL
 * (leases keep caps exact; revocations are polled). One difference: a worker that finds PGlite
 * behind the socket (`version()`, src/db/client.ts isServedPglite) writes its usage batches in
 * the form cheapest for PGlite, the sums computed in the worker (src/db/queries/usage.ts).
 *
 * Many client connections share the one session, so the multiplexing unit is not the message:
 * a connection's messages are collected up to a Sync (or a simple Query) and run as one batch,
 * because the extended protocol's unnamed statement lives in the session, and another
 * connection's Parse between this one's Parse and Bind would run the wrong statement
 * (`@electric-sql/pglite-socket` 0.2 multiplexes per message and mixes them up: 1,499 of 3,000
 * concurrent statements of three shapes failed with "bind message supplies 1 parameters, but
 * prepared statement \"\" requires 2"). A batch that leaves a transaction open (ReadyForQuery
 * status T or E) keeps the session for its connection until a batch ends idle; a connection
 * that closes inside a transaction is rolled back. Session settings (statement_timeout) are
 * therefore shared by all workers, and session advisory locks are held by the one session.
 */
import { chmodSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import type { PGlite } from "@electric-sql/pglite";

const SSL_REQUEST = 80877103;
const CANCEL_REQUEST = 80877102;
const GSS_REQUEST = 80877104;
/** Longest message a worker may send (a usage batch is far below it). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** The socket file name the PostgreSQL driver derives from `host=<dir>` and port 5432. */
export const SOCKET_NAME = ".s.PGSQL.5432";

export interface EmbeddedDbServer {
  path: string;
  /** Runs the primary's own PGlite work in turn with the workers' (SessionQueue.local). */
  local<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The primary's own statements (usage maintenance) queue as this pseudo-connection. */
const LOCAL = 0;
/**
 * Longest a connection may hold the session between two of its batches (inside a transaction,
 * or between a Flush and its Sync): a worker whose event loop stalls there would stop every
 * other worker's database access. Past it the connection is closed and its transaction rolled
 * back (its client sees a connection error, as from a server that ended it).
 */
const HOLD_MS = 15_000;

/** Runs batches on the one session, one at a time; the holder of an open transaction goes first. */
class SessionQueue {
  #owner: number | undefined;
  #running = false;
  #holdTimer: NodeJS.Timeout | undefined;
  readonly #waiting: Array<{ conn: number; run: () => Promise<void> }> = [];

  constructor(
    private readonly pg: PGlite,
    private readonly onStall: (conn: number) => void,
    private readonly holdMs: number,
  ) {}

  /** Runs `batch` for connection `conn`; resolves with PGlite's raw answer. */
  exec(conn: number, batch: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({
        conn,
        run: async () => {
          try {
            const answer = await this.pg.execProtocolRaw(batch);
            this.#hold(endsInTransaction(answer) ? conn : undefined);
            resolve(answer);
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        },
      });
      this.#pump();
    });
  }

  /**
   * Runs the primary's own use of PGlite (`fn`, which must not leave a transaction open) between
   * two workers' batches, never inside a worker's transaction or between its Parse and Bind.
   */
  local<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({
        conn: LOCAL,
        run: async () => {
          try {
            resolve(await fn());
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          } finally {
            this.#hold(undefined);
          }
        },
      });
      this.#pump();
    });
  }

  #hold(owner: number | undefined): void {
    this.#owner = owner;
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    if (owner === undefined) return;
    this.#holdTimer = setTimeout(() => {
      if (this.#owner === owner) this.onStall(owner);
    }, this.holdMs);
    this.#holdTimer.unref();
  }

  /** A connection went away: its queued batches are dropped and its open transaction rolled back. */
  async abandon(conn: number): Promise<void> {
    for (let i = this.#waiting.length - 1; i >= 0; i--) if (this.#waiting[i]!.conn === conn) this.#waiting.splice(i, 1);
    if (this.#owner !== conn) return;
    await new Promise<void>((resolve) => {
      this.#waiting.unshift({
        conn,
        run: async () => {
          await this.pg.exec("ROLLBACK").catch(() => {});
          this.#hold(undefined);
          resolve();
        },
      });
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#running) return;
    const i = this.#owner === undefined ? 0 : this.#waiting.findIndex((w) => w.conn === this.#owner);
    if (i < 0 || this.#waiting.length === 0) return;
    const [next] = this.#waiting.splice(i, 1);
    this.#running = true;
    void next!.run().finally(() => {
      this.#running = false;
      this.#pump();
    });
  }
}

/** True when the last ReadyForQuery in `answer` says a transaction is open (T) or failed (E). */
function endsInTransaction(answer: Uint8Array): boolean {
  // A batch ends with ReadyForQuery: 'Z', int32 5, status.
  const n = answer.length;
  if (n >= 6 && answer[n - 6] === 0x5a) return answer[n - 1] !== 0x49; // 'I'
  return true; // no ReadyForQuery (a Flush-ended batch): the batch is still under way
}

/** Splits one connection's byte stream into batches that may run on the shared session. */
class Connection {
  #buffer: Buffer = Buffer.alloc(0);
  #started = false;
  #pending: Buffer[] = [];
  #chain: Promise<void> = Promise.resolve();

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly queue: SessionQueue,
  ) {}

  feed(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const message = this.#next();
      if (message === undefined) break;
      if (message === null) return void this.socket.destroy();
      this.#take(message);
    }
  }

  /** The next whole message, undefined when incomplete, null when the stream is not one we serve. */
  #next(): Buffer | null | undefined {
    const b = this.#buffer;
    const headerBytes = this.#started ? 5 : 8;
    if (b.length < headerBytes) return undefined;
    const length = this.#started ? b.readInt32BE(1) + 1 : b.readInt32BE(0);
    if (length < (this.#started ? 5 : 8) || length > MAX_MESSAGE_BYTES) return null;
    if (b.length < length) return undefined;
    this.#buffer = b.subarray(length);
    return b.subarray(0, length);
  }

  #take(message: Buffer): void {
    if (!this.#started) {
      const code = message.readInt32BE(4);
      if (code === SSL_REQUEST || code === GSS_REQUEST) return void this.socket.write("N");
      if (code === CANCEL_REQUEST) return void this.socket.end();
      this.#started = true;
      return this.#run([message]);
    }
    this.#pending.push(message);
    const type = message[0];
    // Sync, simple Query, Flush and Terminate end a batch; the rest wait for them.
    if (type === 0x53 || type === 0x51 || type === 0x48) {
      const batch = this.#pending;
      this.#pending = [];
      this.#run(batch);
    } else if (type === 0x58) {
      this.socket.end();
    }
  }

  #run(messages: Buffer[]): void {
    const batch = messages.length === 1 ? messages[0]! : Buffer.concat(messages);
    // In order per connection: the driver pipelines, and answers must come back in order.
    this.#chain = this.#chain.then(async () => {
      try {
        const answer = await this.queue.exec(this.id, batch);
        if (!this.socket.destroyed) this.socket.write(answer);
      } catch {
        this.socket.destroy();
      }
    });
  }

  async closed(): Promise<void> {
    await this.#chain;
    await this.queue.abandon(this.id);
  }
}

/** Serves `pg` on `<dir>/.s.PGSQL.5432`; the caller holds the data directory's lock. */
export async function serveEmbeddedDb(pg: PGlite, dir: string, opts: { holdMs?: number } = {}): Promise<EmbeddedDbServer> {
  const path = `${dir}/${SOCKET_NAME}`;
  rmSync(path, { force: true }); // a socket left by a process that died: the lock is ours now
  const byId = new Map<number, Socket>();
  const queue = new SessionQueue(pg, (conn) => byId.get(conn)?.destroy(), opts.holdMs ?? HOLD_MS);
  const sockets = new Set<Socket>();
  let next = LOCAL;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    const conn = new Connection(++next, socket, queue);
    byId.set(conn.id, socket);
    socket.on("data", (chunk: Buffer) => conn.feed(chunk));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      sockets.delete(socket);
      byId.delete(conn.id);
      void conn.closed();
    });
  });
  // No password guards the socket: whoever connects has the whole database. Bound where only
  // this user can reach it, made 0600 there, and only then moved to its path, so it never stands
  // there with the umask's permissions (0775 under umask 002: connectable by the group), not even
  // between listen() and a chmod (test/probe-cluster-socket.test.ts).
  // Both names short: the bound path is never longer than the final one (sun_path: 107 bytes).
  const privateDir = mkdtempSync(`${dir}/.s-`);
  try {
    const bound = `${privateDir}/s`;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(bound, () => resolve());
    });
    chmodSync(bound, 0o600);
    renameSync(bound, path);
  } catch (e) {
    server.close();
    throw e;
  } finally {
    rmSync(privateDir, { recursive: true, force: true });
  }
  return {
    path,
    local: (fn) => queue.local(fn),
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      rmSync(path, { force: true });
    },
  };
}
