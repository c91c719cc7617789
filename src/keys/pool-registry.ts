/**
 * Key pools in memory, for the relay engine: each pool's usable keys (decrypted once), its
 * selection strategy, and the health rules of DESIGN 8, shaped so that no token holder can take
 * a shared pool down (issue 17):
 *
 * - Strikes. Only an answer proving the key itself bad (a 401, a provider's "invalid key"
 *   body) is a strike. Strikes are counted in the database (`upstream_keys.auth_strikes`, one
 *   atomic statement, so instances add up) and the key is disabled at `authStrikes`, never by
 *   one call; a good answer clears them (a write only when this instance knows of any).
 * - Rests. A 403 or 429 rests the key for the model the call named only (providers scope
 *   both by model as often as by key), for its Retry-After capped at `cooldownMaxMs`. Rests
 *   live in memory, per instance: each instance learns them from its own answers, and no
 *   answer costs a database write. No answer rests a whole key: whether a 429 is about the key,
 *   its organisation or one model cannot be told from it, and a key that is really exhausted
 *   simply rests for each model as calls ask for it.
 * - `keyErrors`: the per-token budget of key errors (src/keys/key-error-budget.ts).
 *
 * Disabling is written to the database so every instance sees it; the pools are re-read
 * after every local change and every `refreshMs`.
 */
import { PeriodicReload } from "../periodic-reload.js";
import { createHash } from "node:crypto";
import type { Db } from "../db/client.js";
import {
  addKeyStrike,
  clearKeyStrikes,
  createPool,
  deleteKey,
  deletePool,
  findPool,
  insertKeys,
  listKeys,
  listPools,
  setKeyEnabled,
  type PoolWithCounts,
} from "../db/queries/pools.js";
import type { KeyPoolRow, UpstreamKeyRow } from "../db/schema/index.js";
import { RelayError } from "../errors.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { randomBase62 } from "../random-base62.js";
import { KeyErrorBudget } from "./key-error-budget.js";
import { Selector, STRATEGY_BY_NUMBER, type Candidate } from "./key-selection.js";
import { ModelRests } from "./model-rests.js";
import { maskSecret, type SecretBox } from "./secret-box.js";

export interface KeyHealthOptions {
  /** Strikes that disable a key (config keyAuthStrikes). */
  authStrikes: number;
  /** Longest rest a 403/429 gives a key for one model, whatever its Retry-After (config keyCooldownMaxMs). */
  cooldownMaxMs: number;
  /** Key errors one token may draw per minute before its calls are refused; 0: no limit. */
  tokenKeyErrorsPerMinute: number;
}

/** What this instance knows of a key's health; one object per key, kept across reloads. */
interface KeyHealth {
  /** Strikes as of the last reload or local change (the database holds the count). */
  strikes: number;
  rests: ModelRests;
}

export interface PoolKey extends Candidate {
  pool: string;
  key: string;
  health: KeyHealth;
}

interface PoolState {
  row: KeyPoolRow;
  selector: Selector;
  keys: PoolKey[];
  /** Keys of the pool disabled (by an admin or after `authStrikes` strikes), as of the last reload. */
  disabled: number;
}

/** One pool's keys by state, for /metrics. */
export interface PoolHealth {
  pool: string;
  provider: string;
  /** Enabled and resting for no model. */
  enabled: number;
  /** Enabled but resting for at least one model (after a 403 or 429). */
  cooling: number;
  disabled: number;
}

export interface AddKeysResult {
  added: UpstreamKeyRow[];
  skipped: number;
  failed: number;
}

/**
 * Told about automatic health changes (for the audit log): a key disabled, or a key starting to
 * rest for a model (once per key and model per rest, however many answers said so).
 */
export type KeyHealthListener = (event: { keyId: string; pool: string; action: "key.cooldown" | "key.disabled"; detail: string }) => void;

const POOL_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const MAX_BATCH = 1000;
const MIN_REST_MS = 1000;

export class PoolRegistry {
  #pools = new Map<string, PoolState>();
  readonly #refresh = new PeriodicReload(() => this.reload());
  #listener: KeyHealthListener | undefined;
  /** Key errors per token (DESIGN 8): checked before a pooled call is counted. */
  readonly keyErrors: KeyErrorBudget;

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
    private readonly providers: ProviderRegistry,
    private readonly opts: KeyHealthOptions,
  ) {
    this.keyErrors = new KeyErrorBudget(opts.tokenKeyErrorsPerMinute);
  }

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

  /** The next key of a pool usable for `model`, skipping `exclude` (keys already tried for this call). */
  pick(pool: string, exclude: ReadonlySet<string>, model?: string): PoolKey | undefined {
    const state = this.#pools.get(pool);
    if (!state) return undefined;
    const now = Date.now();
    const usable = state.keys.filter((k) => !exclude.has(k.id) && !k.health.rests.has(model, now));
    const key = state.selector.pick(usable);
    if (key) key.lastUsedMs = now;
    return key;
  }

  /** True when the pool has a key usable for `model` outside `exclude`. */
  hasUsable(pool: string, exclude: ReadonlySet<string>, model?: string): boolean {
    const now = Date.now();
    return this.#pools.get(pool)?.keys.some((k) => !exclude.has(k.id) && !k.health.rests.has(model, now)) ?? false;
  }

  /** Milliseconds until a key outside `exclude` ends its rest for `model`; 0 when none rests for it. */
  restLeft(pool: string, exclude: ReadonlySet<string>, model?: string): number {
    const now = Date.now();
    let soonest = 0;
    for (const k of this.#pools.get(pool)?.keys ?? []) {
      const left = exclude.has(k.id) ? 0 : k.health.rests.left(model, now);
      if (left > 0 && (soonest === 0 || left < soonest)) soonest = left;
    }
    return soonest;
  }

  /** Keys per pool by state, from memory (no query: it answers while the database is down). */
  health(): PoolHealth[] {
    const now = Date.now();
    const out: PoolHealth[] = [];
    for (const [pool, state] of this.#pools) {
      let cooling = 0;
      for (const k of state.keys) if (k.health.rests.any(now)) cooling++;
      out.push({ pool, provider: state.row.provider, enabled: state.keys.length - cooling, cooling, disabled: state.disabled });
    }
    return out;
  }

  /**
   * Rests a key for one model after a 403 or 429 (`status`): for `ms` (the answer's Retry-After
   * or a default), at least a second and at most `cooldownMaxMs`. In memory only.
   */
  rest(key: PoolKey, model: string | undefined, ms: number, status: number): void {
    const now = Date.now();
    const until = now + Math.min(this.opts.cooldownMaxMs, Math.max(MIN_REST_MS, ms));
    if (!key.health.rests.add(model, until, now)) return; // already resting: audited when the rest began
    const detail = `${status} for model ${JSON.stringify((model ?? "").slice(0, 100))} until ${new Date(until).toISOString()}`;
    this.#listener?.({ keyId: key.id, pool: key.pool, action: "key.cooldown", detail });
  }

  /**
   * One answer proved the key bad (`reason`: a 401, an "invalid key" body): a strike, added in
   * the database; the statement that reaches `authStrikes` disables the key, for every instance.
   */
  async strike(key: PoolKey, reason: string): Promise<void> {
    const row = await addKeyStrike(this.db, key.id, this.opts.authStrikes, reason);
    if (!row) return; // deleted, or disabled meanwhile
    key.health.strikes = row.authStrikes;
    if (row.enabled) return;
    const state = this.#pools.get(key.pool);
    if (state && state.keys.some((k) => k.id === key.id)) {
      state.keys = state.keys.filter((k) => k.id !== key.id);
      state.disabled++;
    }
    this.#listener?.({ keyId: key.id, pool: key.pool, action: "key.disabled", detail: `${reason} (${row.authStrikes} strikes)` });
  }

  /** The key answered well: its strikes start again from 0 (a database write only when it had some). */
  succeeded(key: PoolKey): void {
    const health = key.health;
    if (health.strikes === 0) return;
    const had = health.strikes;
    health.strikes = 0;
    clearKeyStrikes(this.db, key.id).catch(() => {
      health.strikes = Math.max(health.strikes, had);
    });
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
      // One health object per key across reloads: a call holding the old PoolKey updates it too.
      const health = previous?.health ?? { strikes: 0, rests: new ModelRests() };
      health.strikes = k.authStrikes;
      state.keys.push({
        id: k.id,
        pool: k.pool,
        key: previous?.key ?? this.box.open(k.keyEnc, k.id),
        weight: Math.max(1, k.weight),
        lastUsedMs: Math.max(previous?.lastUsedMs ?? 0, k.lastUsedAt?.getTime() ?? 0),
        current: previous?.current ?? 0,
        health,
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
