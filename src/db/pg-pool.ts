/**
 * A bounded connection pool for PostgreSQL (issue 19, finding 2). postgres.js alone has no
 * bound on the wait for a connection (it queues or pipelines behind busy ones) and none on a
 * statement whose answer never comes, so a stalled network or a table lock held every request
 * for minutes. Here:
 *
 * - each connection is its own postgres.js client with `max: 1`, so one that stalls can be
 *   closed alone, and the pool knows which are busy;
 * - taking a connection waits at most `acquireTimeoutMs`, then fails with PoolExhaustedError
 *   (503 on the request path, "pool exhausted" on /readyz);
 * - the server cancels a statement after `statementTimeoutMs` (`statement_timeout`, set at
 *   connection start); the client gives up `CLIENT_MARGIN_MS` later, because a connection that
 *   lost its bytes never returns the server's error: it then closes that connection;
 * - every connection says `application_name=relayapi/<instance>` in pg_stat_activity.
 *
 * `client` is what drizzle receives: it looks like a postgres.js `Sql` to drizzle's session
 * (`unsafe`, `begin`, `options`), and runs each statement, or each whole transaction, on one
 * connection taken from the pool.
 */
import postgres from "postgres";
import { PoolExhaustedError, StatementDeadlineError } from "./db-errors.js";

type Sql = postgres.Sql;

/** How long after the server's statement timeout the client stops waiting for its answer. */
export const CLIENT_MARGIN_MS = 1000;

export interface PgPoolOptions {
  url: string;
  size: number;
  /** Server-side statement_timeout; the client gives up CLIENT_MARGIN_MS later. 0: no bound. */
  statementTimeoutMs: number;
  /** Longest wait for a free connection. */
  acquireTimeoutMs: number;
  /** Longest wait for a new connection to be ready (TCP, TLS, authentication). */
  connectTimeoutMs: number;
  applicationName: string;
  /** Told once per connection that stalled (closed by the client) or per burst of refusals. */
  onTrouble?: (what: string, e: Error) => void;
}

interface Slot {
  sql: Sql | undefined;
  /** The client holds an authenticated connection (postgres.js's onclose clears it). */
  connected: boolean;
}

interface Waiter {
  resolve(slot: Slot): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** How long after the last refused wait the pool still counts as exhausted (for /readyz). */
const EXHAUSTED_WINDOW_MS = 2000;

export class PgPool {
  readonly #opts: PgPoolOptions;
  readonly #slots: Slot[];
  /** Free slots, most recently used last: a light load keeps using the same warm connections. */
  readonly #idle: Slot[];
  readonly #waiters: Waiter[] = [];
  /** drizzle sets its type parsers here once; each new client gets a copy. */
  readonly #parsers: Record<string, unknown> = {};
  readonly #serializers: Record<string, unknown> = {};
  #refusedAt = 0;
  #closed = false;

  constructor(opts: PgPoolOptions) {
    this.#opts = opts;
    this.#slots = Array.from({ length: Math.max(1, opts.size) }, () => ({ sql: undefined, connected: false }));
    this.#idle = [...this.#slots];
  }

  /** The postgres.js look-alike for drizzle(): statements and transactions through the pool. */
  get client(): Sql {
    const unsafe = (query: string, params?: unknown[], options?: { prepare?: boolean }) => {
      const run = (values: boolean): Promise<unknown> =>
        this.run((sql) => {
          const q = sql.unsafe(query, params as postgres.ParameterOrJSON<never>[] | undefined, options);
          return values ? q.values() : q;
        });
      return {
        values: () => run(true),
        then: <A, B>(ok?: (v: unknown) => A | PromiseLike<A>, ko?: (e: unknown) => B | PromiseLike<B>) => run(false).then(ok, ko),
      };
    };
    const begin = (fn: (tx: postgres.TransactionSql) => unknown) => this.run((sql, kick) => sql.begin((tx) => fn(watched(tx, kick))));
    return { options: { parsers: this.#parsers, serializers: this.#serializers }, unsafe, begin } as unknown as Sql;
  }

  /**
   * Runs `work` on one connection. The client-side deadline starts when the connection is
   * taken and is pushed back by `kick()` (each statement of a transaction).
   */
  async run<T>(work: (sql: Sql, kick: () => void) => PromiseLike<T>): Promise<T> {
    const slot = await this.#acquire();
    try {
      return await this.#watch(slot, work);
    } finally {
      this.#release(slot);
    }
  }

  /** Every connection is busy and a wait for one was refused lately. */
  exhausted(): boolean {
    return this.#idle.length === 0 && Date.now() - this.#refusedAt < EXHAUSTED_WINDOW_MS;
  }

  stats(): { size: number; busy: number; waiting: number } {
    return { size: this.#slots.length, busy: this.#slots.length - this.#idle.length, waiting: this.#waiters.length };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(poolClosed());
    }
    await Promise.all(this.#slots.map((s) => s.sql?.end({ timeout: 5 })));
  }

  #acquire(): Promise<Slot> {
    if (this.#closed) return Promise.reject(poolClosed());
    const free = this.#idle.pop();
    if (free) return Promise.resolve(free);
    const wait = this.#opts.acquireTimeoutMs;
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i !== -1) this.#waiters.splice(i, 1);
          const quiet = Date.now() - this.#refusedAt > EXHAUSTED_WINDOW_MS;
          this.#refusedAt = Date.now();
          const e = new PoolExhaustedError(this.#slots.length, wait);
          if (quiet) this.#opts.onTrouble?.("database pool exhausted", e);
          reject(e);
        }, wait),
      };
      this.#waiters.push(waiter);
    });
  }

  #release(slot: Slot): void {
    const next = this.#waiters.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(slot);
    } else {
      this.#idle.push(slot);
    }
  }

  #watch<T>(slot: Slot, work: (sql: Sql, kick: () => void) => PromiseLike<T>): Promise<T> {
    const sql = (slot.sql ??= this.#open(slot));
    const limit = this.#opts.statementTimeoutMs;
    if (limit === 0) return new Promise<T>((started) => started(work(sql, () => {}))).then((v) => this.#connected(slot, sql, v));
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const arm = (ms: number): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          const e = new StatementDeadlineError(ms);
          this.#retire(slot, sql, e);
          reject(e);
        }, ms);
      };
      // A new connection may first need its own connect timeout.
      arm(limit + CLIENT_MARGIN_MS + (slot.connected ? 0 : this.#opts.connectTimeoutMs));
      new Promise<T>((started) => started(work(sql, () => arm(limit + CLIENT_MARGIN_MS))))
        .then((v) => resolve(this.#connected(slot, sql, v)), reject)
        .finally(() => clearTimeout(timer));
    });
  }

  #connected<T>(slot: Slot, sql: Sql, v: T): T {
    if (slot.sql === sql) slot.connected = true;
    return v;
  }

  /** Closes a stalled connection (what it was running fails) so the slot opens a new one. */
  #retire(slot: Slot, sql: Sql, e: Error): void {
    if (slot.sql === sql) {
      slot.sql = undefined;
      slot.connected = false;
    }
    this.#opts.onTrouble?.("database connection stalled; closed it", e);
    void sql.end({ timeout: 0 }).catch(() => {});
  }

  #open(slot: Slot): Sql {
    const limit = this.#opts.statementTimeoutMs;
    const { url, path } = unixSocket(this.#opts.url);
    const sql: Sql = postgres(url, {
      ...(path === undefined ? {} : { path }),
      max: 1,
      onnotice: () => {},
      // postgres.js's automatic server-side prepared statements left a connection waiting in
      // ClientRead (a request never answered) under bursts from two relays in one process;
      // the hot statements are still built once by drizzle's prepare().
      prepare: false,
      // No array-type lookup at connect: postgres.js runs it with a dropped promise, so a
      // connection dying at that moment crashed the process with an unhandled rejection
      // (issue 21). Drizzle parses the text[] columns itself.
      fetch_types: false,
      connect_timeout: this.#opts.connectTimeoutMs / 1000,
      // Startup parameters: in force from the first statement, and again after a reconnect.
      // (Behind PgBouncer, list statement_timeout in its ignore_startup_parameters.)
      connection: {
        application_name: this.#opts.applicationName,
        ...(limit > 0 ? { statement_timeout: limit } : {}),
      },
      onclose: () => {
        if (slot.sql === sql) slot.connected = false;
      },
    });
    Object.assign(sql.options.parsers, this.#parsers);
    Object.assign(sql.options.serializers, this.#serializers);
    return sql;
  }
}

/** Like postgres.js's own error after end(): a connection error, so callers see an outage. */
function poolClosed(): Error {
  return Object.assign(new Error("database pool closed"), { code: "CONNECTION_ENDED" });
}

/** A transaction's `sql` whose statements each push the client-side deadline back. */
function watched(tx: postgres.TransactionSql, kick: () => void): postgres.TransactionSql {
  return new Proxy(tx, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (prop !== "unsafe" || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        kick();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * libpq's `?host=/dir` for a Unix socket (`postgres://user@localhost/db?host=/var/run/postgresql`),
 * which postgres.js would send as a startup parameter: the socket is `<dir>/.s.PGSQL.<port>`.
 * The workers of `serve --workers` reach the primary's embedded database this way (src/cluster/).
 */
export function unixSocket(url: string): { url: string; path?: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url };
  }
  const dir = parsed.searchParams.get("host");
  if (dir === null || !dir.startsWith("/")) return { url };
  parsed.searchParams.delete("host");
  return { url: parsed.toString(), path: `${dir}/.s.PGSQL.${parsed.port || 5432}` };
}

/** `relayapi/<name>`, within PostgreSQL's 63 bytes for application_name. */
export function applicationName(instance: string): string {
  return `relayapi/${instance}`.replace(/[^\x20-\x7e]/g, "?").slice(0, 63);
}
