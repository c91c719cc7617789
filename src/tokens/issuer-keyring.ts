/**
 * Issuer keys in memory, for the sealed-token check path: kid -> (issuer, 256-bit key). Reloaded
 * after every local change and every `refreshMs`, so a key disabled on one instance stops
 * working on all of them within that time. Admin operations (create, rotate, disable) live here
 * too so the cache is refreshed by the same code that changes the rows.
 */
import { PeriodicReload } from "../periodic-reload.js";
import { randomBytes } from "node:crypto";
import type { Db } from "../db/client.js";
import { addIssuerKey, createIssuer, disableIssuer, listActiveIssuerKeys, listIssuers, type IssuerWithKeys } from "../db/queries/issuers.js";
import { RelayError } from "../errors.js";
import type { SecretBox } from "../keys/secret-box.js";
import { randomBase62 } from "../random-base62.js";

export interface IssuerKey {
  kid: string;
  issuer: string;
  key: Uint8Array;
}

export interface NewIssuerKey {
  kid: string;
  /** base64url of the 32-byte key: shown once. */
  secret: string;
}

const ISSUER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/**
 * ECDH-ES tokens are scoped `byok-<hash>` and login users `login.<name>` (src/logins): an issuer
 * of either shape could share their ids.
 */
const RESERVED_NAME = /^(byok-|login\.)/;
/** The `aes_key` every copy of the original RelayAPI shipped in `default.rai`: public. */
const PUBLISHED_KEY_HEX = "0123456789abcdef".repeat(4);

export class IssuerKeyring {
  #keys = new Map<string, IssuerKey>();
  readonly #refresh = new PeriodicReload(() => this.reload());

  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  start(refreshMs: number): Promise<void> {
    return this.#refresh.start(refreshMs);
  }

  stop(): void {
    this.#refresh.stop();
  }

  /** The active key with this kid, or undefined (unknown or disabled). */
  get(kid: string): IssuerKey | undefined {
    return this.#keys.get(kid);
  }

  async reload(): Promise<void> {
    const rows = await listActiveIssuerKeys(this.db);
    const keys = new Map<string, IssuerKey>();
    for (const r of rows) keys.set(r.kid, { kid: r.kid, issuer: r.issuer, key: Buffer.from(this.box.open(r.secretEnc, r.kid), "base64url") });
    this.#keys = keys;
  }

  async create(name: string, secret?: Uint8Array): Promise<NewIssuerKey> {
    if (!ISSUER_NAME.test(name)) throw new RelayError("bad_request", "issuer name must be 1-64 lower case letters, digits, '.', '_' or '-'");
    if (RESERVED_NAME.test(name)) throw new RelayError("bad_request", "issuer names starting with byok- or login. are reserved");
    if (secret && Buffer.from(secret).toString("hex") === PUBLISHED_KEY_HEX) {
      throw new RelayError("bad_request", "this is the original RelayAPI's published default key: anyone could mint tokens with it");
    }
    const key = this.#newKey(secret);
    if (!(await createIssuer(this.db, name, { kid: key.kid, secretEnc: this.box.seal(key.secret, key.kid) }))) {
      throw new RelayError("already_exists", "an issuer with this name exists");
    }
    await this.reload();
    return key;
  }

  async rotate(name: string): Promise<NewIssuerKey> {
    const key = this.#newKey();
    if (!(await addIssuerKey(this.db, name, { kid: key.kid, secretEnc: this.box.seal(key.secret, key.kid) }))) {
      throw new RelayError("not_found", "no such enabled issuer");
    }
    await this.reload();
    return key;
  }

  async disable(name: string, kid?: string): Promise<void> {
    if (!(await disableIssuer(this.db, name, kid || undefined))) throw new RelayError("not_found", "no such issuer or key");
    await this.reload();
  }

  list(): Promise<IssuerWithKeys[]> {
    return listIssuers(this.db);
  }

  #newKey(secret?: Uint8Array): NewIssuerKey {
    const bytes = secret ?? randomBytes(32);
    if (bytes.length !== 32) throw new RelayError("bad_request", "issuer keys are 32 bytes");
    return { kid: "kid_" + randomBase62(16), secret: Buffer.from(bytes).toString("base64url") };
  }
}
