/**
 * Logins in memory, for the check path (issue 24.4): an app's own OIDC ID token as the relay
 * credential. Enabled logins are reloaded after every local change and every `refreshMs`, so a
 * login disabled or removed on one instance stops working on all of them within that time (500
 * ms on PostgreSQL: within the second issue 24 asks), and its users' open WebSocket sessions
 * are closed then (onGone). Admin operations live here too, so the view is refreshed by the same
 * code that changes the rows.
 *
 * A token is routed by its unverified `iss` (and `aud` when several logins share an issuer),
 * then verified with that login's keys only (src/logins/id-token.ts). A verified token is kept
 * by its hash for at most VERIFIED_CACHE_MS and never past its `exp`; each hit checks that its
 * login is still the enabled one it was verified against, so neither this cache nor TokenStore's
 * keeps a disabled login alive.
 */
import type { JWTPayload, JWTVerifyGetKey } from "jose";
import type { Db } from "../db/client.js";
import { deleteLogin, insertLogin, listLogins, planExists, setLoginDisabled } from "../db/queries/logins.js";
import type { LoginRow } from "../db/schema/index.js";
import { invalidToken, RelayError } from "../errors.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import { maskSecret, type SecretBox } from "../keys/secret-box.js";
import { PeriodicReload } from "../periodic-reload.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { hashSecret } from "../tokens/issued-token.js";
import { limitsFromClaims, limitsToClaims, metaLimitsOf } from "../tokens/token-limits.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { ID_TOKEN_SKEW_SECONDS, peekClaims, remoteKeys, verifyIdToken } from "./id-token.js";
import { discoverJwksUrl } from "./jwks-discovery.js";
import { claimValue, LOGIN_SUBJECT_MAX, loginSubject, loginTokenMeta, type ActiveLogin } from "./login-meta.js";
import { checkLoginInput, type LoginInput } from "./login-rules.js";

/**
 * How long a verified ID token is taken on its hash alone. Verifying costs ~0.3 ms per call
 * (RS256 and ES256 alike, measured on a 2-core box) against ~4 µs for the hash: the cache saves
 * that for a hot client, and bounds how long a key removed from the issuer's set keeps admitting
 * a token it signed.
 */
const VERIFIED_CACHE_MS = 30_000;
const MAX_VERIFIED = 50_000;

interface Loaded extends ActiveLogin {
  updatedAtMs: number;
  keys: JWTVerifyGetKey;
}

interface Verified {
  login: Loaded;
  meta: TokenMeta;
  until: number;
}

export interface LoginStoreDeps {
  db: Db;
  box: SecretBox;
  providers: ProviderRegistry;
  pools: PoolRegistry;
}

export class LoginStore {
  /** Enabled logins by name; an entry is replaced (a new object) whenever its row changes. */
  #byName = new Map<string, Loaded>();
  #byIssuer = new Map<string, Loaded[]>();
  /** One remote key set per JWKS URL, kept across reloads so its cache and cool-down survive. */
  #keySets = new Map<string, JWTVerifyGetKey>();
  readonly #verified = new Map<string, Verified>();
  readonly #refresh = new PeriodicReload(() => this.reload());
  /** Reloads overlap (a periodic one and an admin write's): the last started wins, never an older read. */
  #started = 0;
  #applied = 0;
  readonly #goneListeners = new Set<(name: string) => void>();

  constructor(private readonly deps: LoginStoreDeps) {}

  start(refreshMs: number): Promise<void> {
    return this.#refresh.start(refreshMs);
  }

  stop(): void {
    this.#refresh.stop();
  }

  async reload(): Promise<void> {
    const seq = ++this.#started;
    const rows = await listLogins(this.deps.db);
    if (seq < this.#applied) return;
    this.#applied = seq;
    const byName = new Map<string, Loaded>();
    const byIssuer = new Map<string, Loaded[]>();
    const keySets = new Map<string, JWTVerifyGetKey>();
    for (const row of rows) {
      if (row.disabledAt !== null) continue;
      const before = this.#byName.get(row.name);
      const loaded = before !== undefined && before.updatedAtMs === row.updatedAt.getTime() ? before : this.#load(row, keySets);
      // A row this instance cannot read (another master key, a malformed template) admits nobody.
      if (loaded === undefined) continue;
      keySets.set(loaded.jwksUrl, loaded.keys);
      byName.set(row.name, loaded);
      const same = byIssuer.get(loaded.issuer);
      if (same === undefined) byIssuer.set(loaded.issuer, [loaded]);
      else same.push(loaded);
    }
    const previous = this.#byName;
    this.#byName = byName;
    this.#byIssuer = byIssuer;
    this.#keySets = keySets;
    // Only setLoginDisabled and a new row move `updated_at`: a login still enabled with another
    // one was disabled (or removed and added again) since the last read, and its sessions end too.
    for (const [name, was] of previous) {
      if (byName.get(name)?.updatedAtMs === was.updatedAtMs) continue;
      for (const listener of this.#goneListeners) {
        try {
          listener(name);
        } catch {
          // A listener's failure must not fail the reload: the view above is already in force.
        }
      }
    }
  }

  /**
   * Calls `listener` with the name of each login that stops admitting its users (disabled or
   * removed, here or on another instance, seen by a reload): their open WebSocket sessions,
   * admitted when the login was, are closed (src/server.ts).
   */
  onGone(listener: (name: string) => void): () => void {
    this.#goneListeners.add(listener);
    return () => this.#goneListeners.delete(listener);
  }

  #load(row: LoginRow, keySets: Map<string, JWTVerifyGetKey>): Loaded | undefined {
    try {
      const limits = limitsFromClaims(JSON.parse(row.limits) as object);
      const keys = keySets.get(row.jwksUrl) ?? this.#keySets.get(row.jwksUrl) ?? remoteKeys(row.jwksUrl);
      return {
        name: row.name,
        issuer: row.issuer,
        audience: row.audience,
        jwksUrl: row.jwksUrl,
        subjectClaim: row.subjectClaim,
        plan: row.plan,
        provider: row.provider,
        upstreamKey: row.upstreamKeyEnc === null ? undefined : this.deps.box.open(row.upstreamKeyEnc, boundTo(row.name)),
        pool: row.pool ?? undefined,
        limits,
        metaLimits: metaLimitsOf(limits),
        updatedAtMs: row.updatedAt.getTime(),
        keys,
      };
    } catch {
      return undefined;
    }
  }

  /** The relay token an ID token stands for; 401 (RelayError) when it is not valid, 503 when its issuer's keys cannot be fetched. */
  async authenticate(token: string): Promise<TokenMeta> {
    const now = Date.now();
    const hash = hashSecret(token);
    const hit = this.#verified.get(hash);
    if (hit !== undefined) {
      if (hit.until > now && this.#byName.get(hit.login.name) === hit.login) return hit.meta;
      this.#verified.delete(hash);
    }
    const login = this.#route(peekClaims(token));
    if (login === undefined) throw invalidToken();
    const claims = await verifyIdToken(token, login);
    // Disabled or changed while its keys were being fetched.
    if (this.#byName.get(login.name) !== login) throw invalidToken();
    const claim = claimValue(claims[login.subjectClaim]);
    if (claim === undefined || loginSubject(login.name, claim).length > LOGIN_SUBJECT_MAX) throw invalidToken();
    // jwtVerify required `exp`; it admits a token until `exp` plus the skew, and so does the relay.
    const endMs = ((claims.exp as number) + ID_TOKEN_SKEW_SECONDS) * 1000;
    const meta = loginTokenMeta(login, claim, endMs);
    if (this.#verified.size >= MAX_VERIFIED) this.#verified.clear();
    this.#verified.set(hash, { login, meta, until: Math.min(endMs, now + VERIFIED_CACHE_MS) });
    return meta;
  }

  /** The login whose keys may verify a token with these (unverified) claims. */
  #route(claims: JWTPayload | undefined): Loaded | undefined {
    if (claims === undefined || typeof claims.iss !== "string") return undefined;
    const candidates = this.#byIssuer.get(claims.iss);
    if (candidates === undefined) return undefined;
    const aud = claims.aud;
    return candidates.find((l) => (Array.isArray(aud) ? aud.includes(l.audience) : aud === l.audience));
  }

  /**
   * Adds a login; 400 when a field is not valid or a plan, provider or pool it names does not
   * exist. Without a JWKS URL it is read from the issuer's discovery document now, once, and
   * stored: calls never depend on discovery (src/logins/jwks-discovery.ts).
   */
  async add(input: LoginInput): Promise<LoginRow> {
    checkLoginInput(input);
    const { providers, pools, db, box } = this.deps;
    if (!providers.get(input.provider)) throw new RelayError("bad_request", "unknown provider");
    if (input.pool !== undefined && pools.providerOf(input.pool) !== input.provider) throw new RelayError("bad_request", "no such pool for this provider");
    if (!(await planExists(db, input.plan))) throw new RelayError("bad_request", "no such plan (relayapi plan create)");
    // Tokens are routed by issuer and audience: two logins answering the same pair would be ambiguous.
    const rows = await listLogins(db);
    if (rows.some((r) => r.issuer === input.issuer && r.audience === input.audience)) {
      throw new RelayError("already_exists", "a login with this issuer and audience exists");
    }
    // Before discovery, so a taken name costs no fetch (the insert below still decides a race).
    if (rows.some((r) => r.name === input.name)) throw new RelayError("already_exists", "a login with this name exists");
    const jwksUrl = input.jwksUrl ?? (await discoverJwksUrl(input.issuer));
    const key = input.upstreamKey;
    const row = await insertLogin(db, {
      name: input.name,
      issuer: input.issuer,
      audience: input.audience,
      jwksUrl,
      subjectClaim: input.subjectClaim,
      plan: input.plan,
      provider: input.provider,
      upstreamKeyEnc: key === undefined ? null : box.seal(key, boundTo(input.name)),
      upstreamKeyHint: key === undefined ? "" : maskSecret(key),
      pool: input.pool ?? null,
      limits: JSON.stringify(limitsToClaims(input.limits)),
    });
    if (row === undefined) throw new RelayError("already_exists", "a login with this name exists");
    await this.reload();
    return row;
  }

  list(): Promise<LoginRow[]> {
    return listLogins(this.deps.db);
  }

  async setEnabled(name: string, enabled: boolean): Promise<LoginRow> {
    const row = await setLoginDisabled(this.deps.db, name, !enabled);
    if (row === undefined) throw new RelayError("not_found", "no such login");
    await this.reload();
    return row;
  }

  async delete(name: string): Promise<void> {
    if (!(await deleteLogin(this.deps.db, name))) throw new RelayError("not_found", "no such login");
    await this.reload();
  }
}

/** What a login's upstream key is sealed to: the ciphertext opens only as this login's. */
function boundTo(name: string): string {
  return `login:${name}`;
}
