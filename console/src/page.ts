/** What every page gets: the admin clients, a signal aborted when the page is left, navigation. */
import type { AdminApi } from "./api.js";

export interface PublicContext {
  /** Aborted when the user leaves the page (or switches language): streams and calls stop. */
  signal: AbortSignal;
  navigate(path: string): void;
}

export interface PageContext extends PublicContext {
  /** Admin clients, authenticated by the signed-in admin key. */
  api: AdminApi;
}

/** Renders into `root` (the page's <main>); may keep loading after it returns. */
export type Page = (ctx: PageContext, root: HTMLElement) => void | Promise<void>;

/** A page that needs no admin key (the playground). */
export type PublicPage = (ctx: PublicContext, root: HTMLElement) => void | Promise<void>;
