/**
 * Response and file ownership (issue 25, item 3): an object a provider stores (a response, a
 * file, an upload) is reachable only through tokens of the subject that created it, so one
 * user's token cannot read, cancel or delete another's. The calls concerned are data on the API
 * shape (src/providers/owned-objects.ts); this module applies them for the engine:
 *
 * - `check`, after the policy and before the call is counted: a call on an object recorded as
 *   another subject's, or not recorded at all, gets 404 in the provider's shape (never 403,
 *   which would confirm that the object exists); so does a body field naming such an object
 *   (`previous_response_id`, `file_id`s, `vector_store_ids`, a batch's `input_file_id`). A list
 *   of every subject's objects gets 403, and so does any call on state the rules do not track
 *   (assistants, threads, fine-tuning: deny by default), and so does an input item that names a
 *   stored item by id alone (OpenAI's `item_reference`: no record ties an item to its owner).
 *   These refusals are lifted by `allowUnknown`. A call naming no object costs one search of
 *   its body and no await.
 * - `tap`, on a creating call's successful answer: the id is read as the bytes go by
 *   (src/relay/object-id-finder.ts) and written as `<provider>:<id>` -> subject at once, off
 *   the hot path; the engine awaits the write before the answer ends, so the client's next call
 *   finds it.
 *
 * Ownership is by subject: tokens issued without one share the subject "" and so their objects.
 * Rows expire after `ttlDays` (the object is then unknown) and are pruned in the background.
 */
import { RelayError } from "../errors.js";
import type { Db } from "../db/client.js";
import { ownersOf, pruneOwnedObjects, recordOwner } from "../db/queries/owned-objects.js";
import { sql } from "drizzle-orm";
import type { Logger } from "../log.js";
import { bodyJson, type CallKind, callKindOf, createRulesOf, itemReferenceIn, type OwnedObjectRules, referencedObjects } from "../providers/owned-objects.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { idFinderFor } from "./object-id-finder.js";
import type { ReadInput } from "./types.js";

export interface ObjectOwnershipOptions {
  /** Days a record is kept (0: for ever). Objects older than it are unknown. */
  ttlDays: number;
  /** Forward calls on objects the relay never recorded, lists, and untracked state (one subject's deployment). */
  allowUnknown: boolean;
  /** Between two prunes of expired rows (0: none, as on the workers of `serve --workers`). */
  pruneIntervalMs: number;
  /** PGlite has no autovacuum: the pruned rows' space is vacuumed for reuse. */
  vacuum: boolean;
  log?: Logger | undefined;
}

/** Reads a creating call's answer for the new object's id. */
export interface ObjectIdTap {
  feed(chunk: Buffer): void;
  /** Resolves once the record of an id seen is written (or its failure logged). */
  settled(): Promise<void>;
}

/** Opens an ObjectIdTap for an answer with this status and content type, when it may name an id. */
export type ObjectIdTapOpener = (status: number, contentType: string | undefined) => ObjectIdTap | undefined;

/** Expired rows deleted per statement, and statements per prune at most. */
const PRUNE_BATCH = 5_000;
const PRUNE_ROUNDS = 20;
/** Objects one call may name (OpenAI takes 500 files in a vector store's file batch): one lookup each, in one query. */
const MAX_NAMED = 2_000;
const DAY_MS = 86_400_000;
/** The expiry of a record kept for ever (timestamptz's range goes far beyond). */
const FOREVER = new Date("9999-12-31T00:00:00Z");

export class ObjectOwnership {
  #timer: NodeJS.Timeout | undefined;
  #pruning: Promise<unknown> | undefined;
  #last: { body: Buffer; rules: OwnedObjectRules; json: unknown } | undefined;

  constructor(
    private readonly db: Db,
    private readonly opts: ObjectOwnershipOptions,
  ) {
    if (opts.pruneIntervalMs > 0) {
      this.#timer = setInterval(() => void this.prune(), opts.pruneIntervalMs);
      this.#timer.unref();
    }
  }

  /**
   * Refuses a call on an object that is not the token subject's, a list of everyone's, or a
   * call on state the rules do not track. Returns undefined when nothing is left to look up
   * (the common case: no object named; no database round trip, no await), else the lookup.
   */
  check(token: TokenMeta, provider: ProviderSpec, call: Pick<ReadInput, "method" | "path" | "body" | "upload">): Promise<void> | undefined {
    const rules = provider.shape.objects;
    if (rules === undefined) return undefined;
    const kind = callKindOf(rules, call.method, call.path);
    if (!this.opts.allowUnknown) {
      if (kind.list) throw new RelayError("permission_denied", "listing objects is not allowed: they may be other users'");
      // Deny by default: assistants, threads, fine-tuning... are shared by every user of the key.
      if (kind.untracked) throw new RelayError("permission_denied", "this call reaches objects the relay does not keep apart between users");
    }
    const json = call.upload === undefined ? this.#json(rules, kind, call.body) : undefined;
    // No record ties an item id to its response (a response holds many, each call adds more):
    // an item named by id alone could be any subject's, so it is refused (deny by default).
    if (kind.takesItems && !this.opts.allowUnknown && rules.itemRefs !== undefined && itemReferenceIn(rules.itemRefs, json, call.body)) {
      throw new RelayError("permission_denied", "input items named by id alone (item_reference) are not allowed: send the items, or previous_response_id");
    }
    const named = referencedObjects(rules, json);
    if (kind.used.length === 0 && named.length === 0) return undefined;
    const ids = [...new Set([...kind.used, ...named])];
    if (ids.length > MAX_NAMED) throw new RelayError("bad_request", `a call may name ${MAX_NAMED} stored objects at most`);
    return this.#checkOwners(token, provider, ids);
  }

  /** For a call that creates objects, what reads its answer for their ids; undefined for others. */
  tap(subject: string, provider: ProviderSpec, call: Pick<ReadInput, "method" | "path" | "body">): ObjectIdTapOpener | undefined {
    const rules = provider.shape.objects;
    if (rules === undefined) return undefined;
    const kind = callKindOf(rules, call.method, call.path);
    if (kind.creates.length === 0) return undefined;
    const found = createRulesOf(kind, () => this.#json(rules, kind, call.body));
    if (found.length === 0) return undefined;
    return (status, contentType) => {
      if (status < 200 || status > 299) return undefined;
      const finders = found.flatMap((rule) => idFinderFor(contentType, rule.idAt, rule.eventIdAt) ?? []);
      if (finders.length === 0) return undefined;
      const writes: Promise<void>[] = [];
      return {
        feed: (chunk) => {
          for (const finder of finders) {
            const id = finder.feed(chunk);
            if (id !== undefined) writes.push(this.#record(objectKey(provider, id), subject));
          }
        },
        settled: async () => {
          await Promise.all(writes);
        },
      };
    };
  }

  /**
   * The body as bodyJson reads it. A call that creates an object only on a condition of its
   * body (chat's `store: true`) has it read by the check and then by the tap: the check's answer
   * is kept for the tap (one search per call, not two) and dropped once used, so at most one
   * such body is held past its call, until the next.
   */
  #json(rules: OwnedObjectRules, kind: CallKind, body: Buffer): unknown {
    const last = this.#last;
    if (last?.body === body && last.rules === rules) {
      this.#last = undefined;
      return last.json;
    }
    const json = bodyJson(rules, body, kind.conditional, kind.takesItems);
    if (kind.conditional) this.#last = { body, rules, json };
    return json;
  }

  async #checkOwners(token: TokenMeta, provider: ProviderSpec, ids: string[]): Promise<void> {
    const owners = await ownersOf(
      this.db,
      ids.map((id) => objectKey(provider, id)),
    );
    for (const id of ids) {
      const owner = owners.get(objectKey(provider, id));
      // Another subject's object and one never recorded look alike: neither is confirmed to exist.
      if (owner === undefined ? !this.opts.allowUnknown : owner !== token.subject) throw new RelayError("not_found", "no such object");
    }
  }

  /** Deletes expired records, a bounded batch at a time; returns how many. */
  async prune(): Promise<number> {
    if (this.#pruning) return 0;
    const run = (async () => {
      let total = 0;
      for (let round = 0; round < PRUNE_ROUNDS; round++) {
        const n = await pruneOwnedObjects(this.db, PRUNE_BATCH);
        total += n;
        if (n < PRUNE_BATCH) break;
      }
      if (total > 0 && this.opts.vacuum) await this.db.execute(sql`vacuum owned_objects`);
      return total;
    })();
    this.#pruning = run.catch((e: unknown) => this.opts.log?.warn("owned objects prune failed", { err: e }));
    try {
      return await run.catch(() => 0);
    } finally {
      this.#pruning = undefined;
    }
  }

  /** Stops pruning; waits for a prune under way. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#pruning;
  }

  async #record(object: string, subject: string): Promise<void> {
    const expires = this.opts.ttlDays > 0 ? new Date(Math.min(Date.now() + this.opts.ttlDays * DAY_MS, FOREVER.getTime())) : FOREVER;
    try {
      await recordOwner(this.db, object, subject, expires);
    } catch (e) {
      // The object exists at the provider but not here: its creator will get 404 for it.
      this.opts.log?.warn("owned object not recorded", { err: e });
    }
  }
}

/** The row key: ids are the provider's, so two providers' ids never meet. */
function objectKey(provider: ProviderSpec, id: string): string {
  return `${provider.id}:${id}`;
}
