/**
 * The WebSocket sessions open on this instance, by token (issue 25): a revoked token's sessions
 * are closed when the token store forgets it (revoked here at once; on another instance, found
 * by the revocation poll within REVOCATION_POLL_MS), and shutdown closes them all.
 */
export interface Closable {
  readonly tokenId: string;
  /** The token was revoked or expired: close with the policy code. */
  revoked(): void;
  /** The relay is shutting down: close with going-away. */
  goingAway(): void;
  /** Cut at once (the shutdown deadline). */
  terminate(): void;
}

export class OpenSessions {
  readonly #byToken = new Map<string, Set<Closable>>();

  get size(): number {
    let n = 0;
    for (const set of this.#byToken.values()) n += set.size;
    return n;
  }

  add(s: Closable): void {
    let set = this.#byToken.get(s.tokenId);
    if (set === undefined) this.#byToken.set(s.tokenId, (set = new Set()));
    set.add(s);
  }

  delete(s: Closable): void {
    const set = this.#byToken.get(s.tokenId);
    if (set === undefined) return;
    set.delete(s);
    if (set.size === 0) this.#byToken.delete(s.tokenId);
  }

  revoke(tokenId: string): void {
    for (const s of [...(this.#byToken.get(tokenId) ?? [])]) s.revoked();
  }

  /** Revokes the sessions of every token whose id starts with `prefix` (a disabled login's users: src/logins). */
  revokePrefix(prefix: string): void {
    for (const [id, set] of [...this.#byToken]) if (id.startsWith(prefix)) for (const s of [...set]) s.revoked();
  }

  goingAway(): void {
    for (const set of [...this.#byToken.values()]) for (const s of [...set]) s.goingAway();
  }

  terminate(): number {
    const n = this.size;
    for (const set of [...this.#byToken.values()]) for (const s of [...set]) s.terminate();
    return n;
  }
}
