/** What the primary of `serve --workers` says to its workers over the cluster's IPC channel. */
/** Shut down as on SIGTERM (drain, grace, usage written or spilled). */
export const SHUTDOWN_MESSAGE = "relayapi:shutdown";
/** Shut down now, as on a second SIGTERM. */
export const HURRY_MESSAGE = "relayapi:hurry";
