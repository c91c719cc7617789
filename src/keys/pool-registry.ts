/**
 * Key pools in memory, for the relay engine: each pool's usable keys (decrypted once), its
 * selection strategy, and the health rules of DESIGN 8: a 429 rests a key for its
 * `Retry-After`, a 401/403 disables it with a reason. Health changes are written to the
 * database so every instance sees them; the pools are re-read after every local change and
 * every `refreshMs`.
 */
import { PeriodicReload } from "../db/periodic-reload.js";
import { createHash } from "node:crypto";
import type { Db } from "../db/client.js";
import {
  createPool,
  deleteKey,
  deletePool,
  findPool,
  insertKeys,
  listKeys,
  listPools,
  setKeyCooldown,
  setKeyEnabled,
  type PoolWithCounts,
} from "../db/queries/pools.js";
import type { KeyPoolRow, UpstreamKeyRow } from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { randomBase62 } from "../tokens/issued-token.js";
import { Selector, STRATEGY_BY_NUMBER, type Candidate } from "./key-selection.js";
import { maskSecret, type SecretBox } from "./secret-box.js";

export interface PoolKey extends Candidate {
  pool: string;
  key: string;
  cooldownUntilMs: number;
}

interface PoolState {
  row: KeyPoolRow;
  selector: Selector;
  keys: PoolKey[];
  /** Keys of the pool disabled (by an admin or after a 401/403), as of the last reload. */
  disabled: number;
}

/** One pool's keys by state, for /metrics. */
export interface PoolHealth {
  pool: string;
  provider: string;
  /** Enabled and usable now. */
  enabled: number;
  /** Enabled but resting after a 429. */
  cooling: number;
  disabled: number;
}

export interface AddKeysResult {
  added: UpstreamKeyRow[];
  skipped: number;
  failed: number;
}

/** Told about automatic health changes (for the audit log). */
export type KeyHealthListener = (event: { keyId: string; pool: string; action: "key.cooldown" | "key.disabled"; detail: string }) => void;

const POOL_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const MAX_BATCH = 1000;

export class PoolRegistry {
  #pools = new Map<string, PoolState>();
  readonly #refresh = new PeriodicReload(() => this.reload());
  #listener: KeyHealthListener | undefined;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
    private readonly providers: ProviderRegistry,
  ) {}

  start(refreshMs: number): Promise<void> {
    return this.#refresh.start(refreshMs);
  }

  stop(): void {
    this.#refresh.stop();
  }

  onHealthChange(listener: KeyHealthListener): void {
    this.#listener = listener;
  }

  /** The provider a pool serves, or undefined for an unknown pool. */
  providerOf(pool: string): string | undefined {
    return this.#pools.get(pool)?.row.provider;
  }

  /** The next usable key of a pool, skipping `exclude` (keys already tried for this call). */
  pick(pool: string, exclude: ReadonlySet<string>): PoolKey | undefined {
    const state = this.#pools.get(pool);
    if (!state) return undefined;
    const now = Date.now();
    const usable = state.keys.filter((k) => k.cooldownUntilMs <= now && !exclude.has(k.id));
    const key = state.selector.pick(usable);
    if (key) key.lastUsedMs = now;
    return key;
  }

  /** True when the pool has a usable key outside `exclude`. */
  hasUsable(pool: string, exclude: ReadonlySet<string>): boolean {
    const now = Date.now();
    return this.#pools.get(pool)?.keys.some((k) => k.cooldownUntilMs <= now && !exclude.has(k.id)) ?? false;
  }

  /** Keys per pool by state, from memory (no query: it answers while the database is down). */
  health(): PoolHealth[] {
    const now = Date.now();
    const out: PoolHealth[] = [];
    for (const [pool, state] of this.#pools) {
      let cooling = 0;
      for (const k of state.keys) if (k.cooldownUntilMs > now) cooling++;
      out.push({ pool, provider: state.row.provider, enabled: state.keys.length - cooling, cooling, disabled: state.disabled });
    }
    return out;
  }

  /** Rests a key after a 429 until `until` (milliseconds). */
  async cooldown(key: PoolKey, untilMs: number): Promise<void> {
    key.cooldownUntilMs = untilMs;
    await setKeyCooldown(this.db, key.id, new Date(untilMs));
    this.#listener?.({ keyId: key.id, pool: key.pool, action: "key.cooldown", detail: `until ${new Date(untilMs).toISOString()}` });
  }

  /** Disables a key the provider refused (401/403). */
  async disable(key: PoolKey, reason: string): Promise<void> {
    const state = this.#pools.get(key.pool);
    if (state && state.keys.some((k) => k.id === key.id)) {
      state.keys = state.keys.filter((k) => k.id !== key.id);
      state.disabled++;
    }
    await setKeyEnabled(this.db, key.id, false, reason);
    this.#listener?.({ keyId: key.id, pool: key.pool, action: "key.disabled", detail: reason });
  }

  async reload(): Promise<void> {
    const [pools, keys] = await Promise.all([listPools(this.db), listKeys(this.db)]);
    const next = new Map<string, PoolState>();
    for (const row of pools) {
      const old = this.#pools.get(row.name);
      const strategy = STRATEGY_BY_NUMBER[row.strategy] ?? "round_robin";
      const selector = old && old.selector.strategy === strategy ? old.selector : new Selector(strategy);
      next.set(row.name, { row, selector, keys: [], disabled: 0 });
    }
    for (const k of keys) {
      const state = next.get(k.pool);
      if (!state) continue;
      if (!k.enabled) {
        state.disabled++;
        continue;
      }
      const previous = this.#pools.get(k.pool)?.keys.find((p) => p.id === k.id);
      state.keys.push({
        id: k.id,
        pool: k.pool,
        key: previous?.key ?? this.box.open(k.keyEnc, k.id),
        weight: Math.max(1, k.weight),
        lastUsedMs: Math.max(previous?.lastUsedMs ?? 0, k.lastUsedAt?.getTime() ?? 0),
        current: previous?.current ?? 0,
        cooldownUntilMs: Math.max(previous?.cooldownUntilMs ?? 0, k.cooldownUntil?.getTime() ?? 0),
      });
    }
    this.#pools = next;
  }

  // --- admin operations (AdminService) ---

  async create(name: string, provider: string, strategy: number): Promise<KeyPoolRow> {
    if (!POOL_NAME.test(name)) throw new RelayError("bad_request", "pool name must be 1-64 lower case letters, digits, '.', '_' or '-'");
    if (!this.providers.get(provider)) throw new RelayError("bad_request", "unknown provider");
    if (STRATEGY_BY_NUMBER[strategy] === undefined) throw new RelayError("bad_request", "unknown strategy");
    const row = await createPool(this.db, { name, provider, strategy: strategy || 1 });
    if (!row) throw new RelayError("already_exists", "a pool with this name exists");
    await this.reload();
    return row;
  }

  list(provider?: string): Promise<PoolWithCounts[]> {
    return listPools(this.db, provider);
  }

  async delete(name: string): Promise<void> {
    if (!(await deletePool(this.db, name))) throw new RelayError("not_found", "no such pool");
    await this.reload();
  }

  /** Adds keys in one batch: duplicates (in the batch or the pool) are skipped, bad ones fail. */
  async addKeys(pool: string, keys: readonly string[], weight: number): Promise<AddKeysResult> {
    if (!(await findPool(this.db, pool))) throw new RelayError("not_found", "no such pool");
    if (keys.length > MAX_BATCH) throw new RelayError("bad_request", `at most ${MAX_BATCH} keys per batch`);
    if (weight < 0 || weight > 1000) throw new RelayError("bad_request", "weight must be 1-1000");
    let failed = 0;
    const seen = new Set<string>();
    const fresh = [];
    for (const raw of keys) {
      const key = raw.trim();
      if (key.length === 0 || key.length > 4096 || /[\0-\x20\x7f]/.test(key)) {
        failed++;
        continue;
      }
      const hash = createHash("sha256").update(key).digest("hex");
      if (seen.has(hash)) continue;
      seen.add(hash);
      const id = "key_" + randomBase62(16);
      fresh.push({ id, keyEnc: this.box.seal(key, id), keyHash: hash, masked: maskSecret(key), weight: weight || 1 });
    }
    const added = await insertKeys(this.db, pool, fresh);
    await this.reload();
    return { added, skipped: keys.length - failed - added.length, failed };
  }

  listKeys(pool: string): Promise<UpstreamKeyRow[]> {
    return listKeys(this.db, pool);
  }

  async setEnabled(id: string, enabled: boolean): Promise<UpstreamKeyRow> {
    const row = await setKeyEnabled(this.db, id, enabled, "disabled by an admin");
    if (!row) throw new RelayError("not_found", "no such key");
    await this.reload();
    return row;
  }

  async deleteKey(id: string): Promise<void> {
    if (!(await deleteKey(this.db, id))) throw new RelayError("not_found", "no such key");
    await this.reload();
  }
}
