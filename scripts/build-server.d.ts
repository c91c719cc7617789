/** Types of scripts/build-server.js for TypeScript callers (the benchmark). */
export declare const ROOT: string;
export declare const SERVER_ENTRY: string;
export declare const SERVER_BUNDLE: string;
/** Bundles `entry` into `outfile` unless the bundle is newer than every file it was built from; returns `outfile`. */
export declare function bundleFresh(entry: string, outfile: string): Promise<string>;
