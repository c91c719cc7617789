/**
 * The browser's DPoP key (RFC 9449, issue 9): `browserDpopKey()` returns the page's ES256 key
 * pair, made once with a non-extractable private key and kept in IndexedDB. IndexedDB stores
 * the CryptoKey objects themselves (structured clone), so the private key never exists as bytes
 * the page, an extension's content script or an XSS payload could read and copy: a token bound
 * to it is useless anywhere else. `forgetBrowserDpopKey()` drops it (sign-out, or rotation: the
 * next `browserDpopKey()` makes a new key, and tokens bound to the old one stop working).
 *
 * Browser only (window or worker); in Node use `generateDpopKeyPair()`.
 */
import { generateDpopKeyPair, type DpopKeyPair } from "./dpop-fetch.js";

export interface BrowserDpopKeyOptions {
  /** Which key: one per name (default `"default"`), e.g. one per signed-in user. */
  name?: string;
  /** The IndexedDB database (default `"relayapi-dpop"`); its single object store is `keys`. */
  dbName?: string;
}

const DEFAULT_DB = "relayapi-dpop";
const DEFAULT_NAME = "default";
const STORE = "keys";

/** The stored key pair for `name`, or a new non-extractable one stored under it. */
export async function browserDpopKey(options: BrowserDpopKeyOptions = {}): Promise<DpopKeyPair> {
  const name = options.name ?? DEFAULT_NAME;
  const db = await openKeyDb(options.dbName ?? DEFAULT_DB);
  try {
    const found = await request(db, "readonly", (s) => s.get(name));
    if (isUsable(found)) return pairOf(found);
    const keys = await generateDpopKeyPair(false);
    const record = { privateKey: keys.privateKey, publicKey: keys.publicKey, createdAt: Date.now() };
    if (found !== undefined) {
      // Something unusable (another version, an extractable key): replace it.
      await request(db, "readwrite", (s) => s.put(record, name));
      return keys;
    }
    try {
      // `add`, not `put`: when another tab made a key meanwhile, keep that one (tokens may
      // already be bound to it) and use it here too.
      await request(db, "readwrite", (s) => s.add(record, name));
      return keys;
    } catch (e) {
      if (!(e instanceof DOMException && e.name === "ConstraintError")) throw e;
      const winner = await request(db, "readonly", (s) => s.get(name));
      if (!isUsable(winner)) throw new Error("browserDpopKey: the stored key changed while it was being made");
      return pairOf(winner);
    }
  } finally {
    db.close();
  }
}

/** Deletes the key stored under `name`; the next `browserDpopKey()` makes a new one. */
export async function forgetBrowserDpopKey(options: BrowserDpopKeyOptions = {}): Promise<void> {
  const db = await openKeyDb(options.dbName ?? DEFAULT_DB);
  try {
    await request(db, "readwrite", (s) => s.delete(options.name ?? DEFAULT_NAME));
  } finally {
    db.close();
  }
}

interface StoredKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

function isUsable(v: unknown): v is StoredKey {
  if (typeof v !== "object" || v === null) return false;
  const { privateKey, publicKey } = v as Partial<StoredKey>;
  return (
    privateKey instanceof CryptoKey &&
    publicKey instanceof CryptoKey &&
    privateKey.type === "private" &&
    publicKey.type === "public" &&
    !privateKey.extractable &&
    privateKey.algorithm.name === "ECDSA" &&
    (privateKey.algorithm as EcKeyAlgorithm).namedCurve === "P-256" &&
    privateKey.usages.includes("sign")
  );
}

const pairOf = (v: StoredKey): DpopKeyPair => ({ privateKey: v.privateKey, publicKey: v.publicKey });

function openKeyDb(dbName: string): Promise<IDBDatabase> {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) {
    return Promise.reject(new Error("browserDpopKey needs IndexedDB (a browser window or worker); elsewhere use generateDpopKeyPair()"));
  }
  return new Promise((resolve, reject) => {
    let open: IDBOpenDBRequest;
    try {
      open = idb.open(dbName, 1);
    } catch (e) {
      // Opaque origins (sandboxed frames, data: URLs) throw SecurityError here.
      reject(new Error(`browserDpopKey: IndexedDB is not available here (${errorName(e)})`, { cause: e }));
      return;
    }
    open.onupgradeneeded = () => {
      if (!open.result.objectStoreNames.contains(STORE)) open.result.createObjectStore(STORE);
    };
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(new Error(`browserDpopKey: could not open IndexedDB "${dbName}" (${errorName(open.error)})`, { cause: open.error }));
    open.onblocked = () => reject(new Error(`browserDpopKey: IndexedDB "${dbName}" is blocked by another tab holding an older version`));
  });
}

/** One request in its own transaction, settled once the transaction has committed. */
function request<T>(db: IDBDatabase, mode: IDBTransactionMode, make: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = make(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req.result);
    // The request's own error (e.g. ConstraintError) aborts the transaction; report that one.
    tx.onabort = () => reject(req.error ?? tx.error ?? new Error("browserDpopKey: IndexedDB transaction aborted"));
  });
}

function errorName(e: unknown): string {
  return e instanceof Error || e instanceof DOMException ? e.name : "unknown error";
}
