/**
 * After the grace, the time leased calls and usage records have to reach the database; what has
 * not by then is spilled (usage) or stays counted (leases). Exit comes within grace + this.
 * A module of its own so the primary of `serve --workers` bounds its shutdown by it without
 * loading the relay (src/server.ts).
 */
export const SHUTDOWN_MARGIN_MS = 2_000;
