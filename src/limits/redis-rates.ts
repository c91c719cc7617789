/**
 * Rates shared by every relay instance through Redis, with Bottleneck's ioredis datastore: one
 * Group per (scope, rpm, burst) and one limiter per key, all on a single shared
 * IORedisConnection. Each limiter is a leaky bucket of `burst` tokens that gains
 * `reservoirIncreaseAmount` every `reservoirIncreaseInterval`; Bottleneck's Lua scripts apply it
 * atomically, so N instances together admit the configured rate, not N times it.
 *
 * Bottleneck over Redis needs these guards (pitfalls measured while building this):
 * - `highWater: 0` + OVERFLOW sheds only while the local queue is empty. A job that passed the
 *   `submit` script but lost the `register` script to another instance stays queued (a "ghost"),
 *   every job submitted after it queues too, and each later eats a refill nobody asked for (two
 *   instances, 100 concurrent checks, rpm 60: 80-89 admitted instead of 60). So each key has a
 *   lane here: one job per key and instance inside Bottleneck at a time (Bottleneck serializes a
 *   key's submit+register anyway, so this costs no throughput); a job whose register fails (seen
 *   through Bottleneck's "Drained" debug event) is answered "over" at once, and while a ghost
 *   waits the key answers "over" at once. A ghost that later runs wastes one call: at most one
 *   per instance per race. (Polling the job status instead misread slow registers as ghosts.)
 * - The caller keeps, per key, the shared state last seen (a SharedView: every register answer
 *   carries the reservoir left, every refusal says it is short). It is an upper bound of the
 *   shared bucket (others only take from it; within one refill step, as Bottleneck refills in
 *   whole steps), so a check it cannot pay for is answered "over" without Redis: once a flooded
 *   key is seen empty its refusals cost no round trip. It is also where the local fallback
 *   starts, so an outage hands out no fresh burst (issue 18).
 * - A flood must not stop sharing (issue 18: falling back past 100 waiting checks admitted 3x the
 *   rate). Past MAX_PENDING waiting checks on a key, or DEADLINE_MS without an answer, a check is
 *   shed ("over": 429), never decided locally. Only when Redis is known unreachable (not
 *   connected, a script failed, or a PING probe after a slow check got no answer within
 *   PROBE_TIMEOUT_MS) does `admit` answer "undecided" (null) and the caller use its local bucket.
 *   The probe repeats every PROBE_EVERY_MS until Redis answers, and ioredis reconnects at most
 *   RECONNECT_MAX_MS apart (its default backs off to 5 s: sharing came back 4-5 s late), so
 *   shared limits are back within about a second of Redis.
 * - The typings miss `heartbeatInterval` and declare `ready` a method (it is a promise); the
 *   reservoir a register leaves is read by wrapping the limiter's store (`_store.__register__`,
 *   Bottleneck 2.19.5: its only carrier; without it the fallback starts from the last refusal).
 * Clocks: Bottleneck's scripts take `now` from each instance's clock; keep instances on NTP.
 */
import Bottleneck from "bottleneck";
import { Redis } from "ioredis";

/**
 * Every script refills lazily from the clock (measured: the same admissions at 250 ms and 5 s);
 * the heartbeat publishes capacity so a ghost drains and stops blocking its key. Its cost: one
 * script per live key and instance every 250 ms (STACK.md's value).
 */
const HEARTBEAT_MS = 250;
const DEADLINE_MS = 500;
const MAX_PENDING = 100;
const CONNECT_WAIT_MS = 2_000;
const PROBE_TIMEOUT_MS = 1_000;
const PROBE_EVERY_MS = 250;
const RECONNECT_MAX_MS = 500;

/** 100, 200, 400, then every 500 ms: a reconnect attempt to a dead Redis is one SYN. */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 4), RECONNECT_MAX_MS);

/** What the caller knows of one key's shared bucket (kept in its local bucket, limits.ts). */
export interface SharedView {
  /** At most what the shared bucket holds at `now` (last seen plus refill); undefined if never seen. */
  available(now: number): number | undefined;
  /** The shared bucket was seen holding `tokens` at `now`. */
  seen(tokens: number, now: number): void;
}

/** "ok" (admitted), "over" (refused or shed: 429), null (undecided: Redis unreachable). */
export type Verdict = "ok" | "over" | null;

/** The part of Bottleneck's Redis store that reports the reservoir a register leaves. */
interface RegisterStore {
  __register__(index: string, weight: number, expiration: unknown): Promise<{ success: boolean; reservoir?: unknown }>;
}

/** `heartbeatInterval` is read by Bottleneck's Redis datastore but missing from its typings. */
type GroupOptions = Bottleneck.ConstructorOptions & { heartbeatInterval: number };

/** The keys Bottleneck 2.19.5 keeps per limiter (Scripts.allKeys): `b_${id}_${suffix}`. */
const KEY_SUFFIXES = [
  "settings",
  "job_weights",
  "job_expirations",
  "job_clients",
  "client_running",
  "client_num_queued",
  "client_last_registered",
  "client_last_seen",
];

let jobSeq = 0;

/** Whole-millisecond leak steps for `rpm` tokens a minute (Bottleneck stores them as integers). */
export function leakOf(rpm: number): { interval: number; amount: number } {
  return rpm <= 60_000 ? { interval: Math.ceil(60_000 / rpm), amount: 1 } : { interval: 1, amount: Math.floor(rpm / 60_000) };
}

function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    void p.then(
      (v) => (clearTimeout(timer), resolve(v)),
      () => (clearTimeout(timer), resolve(fallback)),
    );
  });
}

/** The shared bucket cannot hold `cost` tokens now (it never holds more than last seen plus refill). */
function short(view: SharedView, cost: number): boolean {
  return (view.available(Date.now()) ?? Infinity) < cost;
}

export class RedisRates {
  /** Groups by `${scope}:${rpm}/${burst}`, with the TTL their keys get in Redis. */
  private readonly groups = new Map<string, { group: Bottleneck.Group; ttlMs: number }>();
  /** Per limiter: checks waiting for their turn, and the end of the line. */
  private readonly lanes = new Map<Bottleneck, { pending: number; tail: Promise<void> }>();
  /** Jobs inside Bottleneck, by id: called if the job loses the register race. */
  private readonly racing = new Map<string, () => void>();
  /** Per limiter, the caller's view of its shared bucket (updated by every register). */
  private readonly views = new WeakMap<Bottleneck, SharedView>();
  /** A script failed or a probe went unanswered: Redis counts as unreachable until a PING answers. */
  private suspect = false;
  private probing = false;
  private closed = false;

  private constructor(
    private readonly client: Redis,
    private readonly connection: Bottleneck.IORedisConnection,
    private readonly prefix: string,
  ) {}

  /** Connects (waiting up to 2 s); a relay still boots when Redis is down, and `ping()` tells. */
  static async connect(url: string, prefix: string): Promise<RedisRates> {
    const client = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: CONNECT_WAIT_MS, retryStrategy });
    const connection = new Bottleneck.IORedisConnection({ client, Redis });
    const rates = new RedisRates(client, connection, prefix);
    // `ready` is a promise property at runtime, though the typings declare a method.
    const ready = (connection as unknown as { ready: Promise<unknown> }).ready;
    await within(
      ready.then(() => true),
      CONNECT_WAIT_MS,
      false,
    );
    return rates;
  }

  /** Redis is connected and not known to be failing: checks are shared. */
  get up(): boolean {
    return !this.closed && this.client.status === "ready" && !this.suspect;
  }

  /** Takes `cost` tokens from the shared bucket of `key`; see Verdict. Never waits past DEADLINE_MS. */
  admit(scope: string, key: string, rpm: number, burst: number, idleMs: number, cost: number, view: SharedView): Promise<Verdict> {
    if (!this.up) return Promise.resolve(null);
    if (short(view, cost)) return Promise.resolve("over");
    const limiter = this.group(scope, rpm, burst, idleMs).key(`${key}}`);
    this.views.set(limiter, view);
    let lane = this.lanes.get(limiter);
    if (lane === undefined) this.lanes.set(limiter, (lane = { pending: 0, tail: Promise.resolve() }));
    if (lane.pending >= MAX_PENDING) return Promise.resolve("over");
    const own = lane;
    own.pending++;
    return new Promise((resolve) => {
      let settled = false;
      let entered = false;
      const settle = (v: Verdict): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(v);
      };
      // Slow: a busy key or a busy process sheds the check; only a Redis that does not answer a
      // probe turns checks local (a slow job inside Bottleneck starts one).
      const deadline = setTimeout(() => {
        if (entered) this.probe();
        settle(this.up ? "over" : null);
      }, DEADLINE_MS).unref();
      own.tail = own.tail
        .then(() => {
          if (settled) return;
          if (!this.up) return settle(null);
          if (short(view, cost) || limiter.queued() > 0) return settle("over");
          entered = true;
          return this.enter(limiter, cost, view, settle);
        })
        .finally(() => {
          if (--own.pending === 0 && this.lanes.get(limiter) === own) this.lanes.delete(limiter);
        });
    });
  }

  /** Runs one job; resolves when it ran, was dropped, failed, or lost its race (see above). */
  private enter(limiter: Bottleneck, cost: number, view: SharedView, settle: (v: Verdict) => void): Promise<void> {
    return new Promise((leave) => {
      const id = `j${++jobSeq}`;
      const end = (v: Verdict): void => {
        this.racing.delete(id);
        settle(v);
        leave();
      };
      // Refused or lost: the shared bucket held less than `cost`.
      const over = (): void => {
        const now = Date.now();
        view.seen(Math.min(view.available(now) ?? cost - 1, cost - 1), now);
        end("over");
      };
      this.racing.set(id, over);
      limiter
        .schedule({ id, weight: cost }, () => (end("ok"), Promise.resolve()))
        .catch((e: unknown) => {
          if (e instanceof Bottleneck.BottleneckError) return over();
          this.distrust();
          end(null);
        });
    });
  }

  /** Counts Redis as unreachable until a probe answers. */
  private distrust(): void {
    this.suspect = true;
    this.probe();
  }

  /** PINGs Redis (one at a time); no answer within PROBE_TIMEOUT_MS: unreachable, probe again soon. */
  private probe(): void {
    if (this.probing || this.closed) return;
    this.probing = true;
    void within(
      this.client.ping().then(() => true),
      PROBE_TIMEOUT_MS,
      false,
    ).then((ok) => {
      this.probing = false;
      this.suspect = !ok;
      if (!ok && !this.closed) setTimeout(() => this.probe(), PROBE_EVERY_MS).unref();
    });
  }

  /** Reads the reservoir each register leaves into the key's view (see the module comment). */
  private watchRegister(limiter: Bottleneck): void {
    const store = (limiter as unknown as { _store?: Partial<RegisterStore> })._store;
    const register = store?.__register__;
    if (store === undefined || typeof register !== "function") return;
    store.__register__ = async (...args) => {
      const r = await register.apply(store, args);
      if (r.success && typeof r.reservoir === "number") this.views.get(limiter)?.seen(r.reservoir, Date.now());
      return r;
    };
  }

  private group(scope: string, rpm: number, burst: number, idleMs: number): Bottleneck.Group {
    const name = `${scope}:${rpm}/${burst}`;
    let entry = this.groups.get(name);
    if (entry === undefined) {
      const { interval, amount } = leakOf(rpm);
      const ttlMs = Math.max(idleMs, Math.ceil(burst / amount) * interval);
      const options: GroupOptions = {
        datastore: "ioredis",
        connection: this.connection,
        // Limiter ids are `${id}-${key}`, and admit() closes the brace after the key: one hash tag
        // per limiter, so Redis Cluster can run its multi-key scripts (no CROSSSLOT).
        id: `${this.prefix}rl-{${name}`,
        // Keys live in Redis until idle and full again: expiring a partly drained bucket would refill it.
        timeout: ttlMs,
        heartbeatInterval: HEARTBEAT_MS,
        highWater: 0,
        strategy: Bottleneck.strategy.OVERFLOW,
        reservoir: burst,
        reservoirIncreaseInterval: interval,
        reservoirIncreaseAmount: amount,
        reservoirIncreaseMaximum: burst,
      };
      const group = new Bottleneck.Group(options);
      // The only public signal of a lost race: the "Drained <id>" debug event with success false.
      group.on("created", (limiter: Bottleneck) => {
        limiter.on("debug", (_message: string, data: unknown) => {
          const d = data as { success?: unknown; options?: { id?: unknown } } | undefined;
          if (d?.success === false && typeof d.options?.id === "string") this.racing.get(d.options.id)?.();
        });
        this.watchRegister(limiter);
      });
      this.groups.set(name, (entry = { group, ttlMs }));
    }
    return entry.group;
  }

  /** Limiters alive in this process (Bottleneck drops those whose Redis keys expired). */
  get size(): number {
    let n = 0;
    for (const { group } of this.groups.values()) n += group.keys().length;
    return n;
  }

  /**
   * Redis answers a PING within PROBE_TIMEOUT_MS (for /readyz). Also a probe: a partition that
   * leaves the connection open is noticed by the readiness checks even without traffic.
   */
  async ping(): Promise<boolean> {
    if (this.closed) return false;
    const ok = await within(
      this.client.ping().then(() => true),
      PROBE_TIMEOUT_MS,
      false,
    );
    if (ok) this.suspect = false;
    else this.distrust();
    return ok;
  }

  /**
   * Lets jobs inside Bottleneck finish (up to 1 s), stops heartbeats and group sweeps, then quits
   * both connections (forcefully after 1 s). Bottleneck gives a limiter's per-client keys a TTL
   * only when a job registers: a first job cut short by shutdown left 4 keys per limiter in Redis
   * for ever (measured), so every local limiter's keys get their TTL here (a crash can still leak).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await within(
      Promise.all([...this.lanes.values()].map((l) => l.tail)).then(() => true),
      1_000,
      false,
    );
    const expire = this.client.pipeline();
    for (const { group, ttlMs } of this.groups.values()) {
      // Group has no stop(): its sweep interval is unref'd but would keep querying a closed client.
      clearInterval((group as unknown as { interval?: ReturnType<typeof setInterval> }).interval);
      for (const { limiter } of group.limiters()) for (const k of KEY_SUFFIXES) expire.pexpire(`b_${limiter.id}_${k}`, ttlMs);
    }
    if (this.client.status === "ready")
      await within(
        expire.exec().then(() => true),
        1_000,
        false,
      );
    const quit = await within(
      this.connection.disconnect(true).then(() => true),
      1_000,
      false,
    );
    if (!quit) await this.connection.disconnect(false);
  }
}
