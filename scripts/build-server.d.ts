/** Types of scripts/build-server.js for TypeScript callers (the benchmark). */
export declare const ROOT: string;
export declare const SERVER_ENTRY: string;
export declare const SERVER_BUNDLE: string;
/** Bundles `entry` into `outfile` unless the bundle is newer than every file it was built from; returns `outfile`. */
export declare function bundleFresh(entry: string, outfile: string, opts?: { force?: boolean }): Promise<string>;
/** Removes chunks beside `outfile` that its last build did not write, once 10 minutes old. */
export declare function pruneChunks(outfile: string, now?: number): void;
