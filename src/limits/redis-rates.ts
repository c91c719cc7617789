/**
 * Rates shared by every relay instance through Redis, with Bottleneck's ioredis datastore: one
 * Group per (scope, rpm, burst) and one limiter per key, all on a single shared
 * IORedisConnection. Each limiter is a leaky bucket of `burst` tokens that gains
 * `reservoirIncreaseAmount` every `reservoirIncreaseInterval`; Bottleneck's Lua scripts apply it
 * atomically, so N instances together admit the configured rate, not N times it.
 *
 * Bottleneck over Redis needs three guards (pitfalls measured while building this):
 * - `highWater: 0` + OVERFLOW sheds only while the local queue is empty. A job that passed the
 *   `submit` script but lost the `register` script to another instance stays queued (a "ghost"),
 *   every job submitted after it queues too, and each later eats a refill nobody asked for (two
 *   instances, 100 concurrent checks, rpm 60: 80-89 admitted instead of 60). So each key has a
 *   lane here: one job per key and instance inside Bottleneck at a time (Bottleneck serializes a
 *   key's submit+register anyway, so this costs no throughput); a job whose register fails (seen
 *   through Bottleneck's "Drained" debug event) is answered "over" at once, and while a ghost
 *   waits the key answers "over" at once. A ghost that later runs wastes one call: at most one
 *   per instance per race. (Polling the job status instead misread slow registers as ghosts.)
 * - A check costs three scripts in sequence (submit, register, free) plus a timer hop. When Redis
 *   is down, slower than DEADLINE_MS, or MAX_PENDING checks wait on one key (a flood), `admit`
 *   answers "undecided" (null) and the caller uses its local bucket: limits degrade to per
 *   instance instead of vanishing or queueing without bound.
 * - The typings miss `heartbeatInterval` and declare `ready` a method (it is a promise).
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

/** `heartbeatInterval` is read by Bottleneck's Redis datastore but missing from its typings. */
type GroupOptions = Bottleneck.ConstructorOptions & { heartbeatInterval: number };

/** The keys Bottleneck 2.19.5 keeps per limiter (Scripts.allKeys): `b_${id}_${suffix}`. */
const KEY_SUFFIXES = ["settings", "job_weights", "job_expirations", "job_clients", "client_running", "client_num_queued", "client_last_registered", "client_last_seen"];

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

export class RedisRates {
  /** Groups by `${scope}:${rpm}/${burst}`, with the TTL their keys get in Redis. */
  private readonly groups = new Map<string, { group: Bottleneck.Group; ttlMs: number }>();
  /** Per limiter: checks waiting for their turn, and the end of the line. */
  private readonly lanes = new Map<Bottleneck, { pending: number; tail: Promise<void> }>();
  /** Jobs inside Bottleneck, by id: called if the job loses the register race. */
  private readonly racing = new Map<string, () => void>();
  private closed = false;

  private constructor(
    private readonly client: Redis,
    private readonly connection: Bottleneck.IORedisConnection,
    private readonly prefix: string,
  ) {}

  /** Connects (waiting up to 2 s); a relay still boots when Redis is down, and `ping()` tells. */
  static async connect(url: string, prefix: string): Promise<RedisRates> {
    const client = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: CONNECT_WAIT_MS });
    const connection = new Bottleneck.IORedisConnection({ client, Redis });
    const rates = new RedisRates(client, connection, prefix);
    // `ready` is a promise property at runtime, though the typings declare a method.
    const ready = (connection as unknown as { ready: Promise<unknown> }).ready;
    await within(ready.then(() => true), CONNECT_WAIT_MS, false);
    return rates;
  }

  /** 0 when admitted, the milliseconds to wait (one leak step) when over, null when undecided. */
  admit(scope: string, key: string, rpm: number, burst: number, idleMs: number): Promise<number | null> {
    if (this.closed || this.client.status !== "ready") return Promise.resolve(null);
    const retryMs = leakOf(rpm).interval;
    const limiter = this.group(scope, rpm, burst, idleMs).key(`${key}}`);
    let lane = this.lanes.get(limiter);
    if (lane === undefined) this.lanes.set(limiter, (lane = { pending: 0, tail: Promise.resolve() }));
    if (lane.pending >= MAX_PENDING) return Promise.resolve(null);
    const own = lane;
    own.pending++;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (ms: number | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(ms);
      };
      const deadline = setTimeout(() => settle(null), DEADLINE_MS).unref();
      own.tail = own.tail
        .then(() => (settled ? undefined : limiter.queued() > 0 ? settle(retryMs) : this.enter(limiter, retryMs, settle)))
        .finally(() => {
          if (--own.pending === 0 && this.lanes.get(limiter) === own) this.lanes.delete(limiter);
        });
    });
  }

  /** Runs one job; resolves when it ran, was dropped, failed, or lost its race (see above). */
  private enter(limiter: Bottleneck, retryMs: number, settle: (ms: number | null) => void): Promise<void> {
    return new Promise((leave) => {
      const id = `j${++jobSeq}`;
      const end = (ms: number | null): void => {
        this.racing.delete(id);
        settle(ms);
        leave();
      };
      this.racing.set(id, () => end(retryMs));
      limiter.schedule({ id }, () => (end(0), Promise.resolve())).catch((e: unknown) => end(e instanceof Bottleneck.BottleneckError ? retryMs : null));
    });
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
      group.on("created", (limiter: Bottleneck) =>
        limiter.on("debug", (_message: string, data: unknown) => {
          const d = data as { success?: unknown; options?: { id?: unknown } } | undefined;
          if (d?.success === false && typeof d.options?.id === "string") this.racing.get(d.options.id)?.();
        }),
      );
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

  ping(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return within(this.client.ping().then(() => true), 1_000, false);
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
    await within(Promise.all([...this.lanes.values()].map((l) => l.tail)).then(() => true), 1_000, false);
    const expire = this.client.pipeline();
    for (const { group, ttlMs } of this.groups.values()) {
      // Group has no stop(): its sweep interval is unref'd but would keep querying a closed client.
      clearInterval((group as unknown as { interval?: ReturnType<typeof setInterval> }).interval);
      for (const { limiter } of group.limiters()) for (const k of KEY_SUFFIXES) expire.pexpire(`b_${limiter.id}_${k}`, ttlMs);
    }
    if (this.client.status === "ready") await within(expire.exec().then(() => true), 1_000, false);
    const quit = await within(this.connection.disconnect(true).then(() => true), 1_000, false);
    if (!quit) await this.connection.disconnect(false);
  }
}
