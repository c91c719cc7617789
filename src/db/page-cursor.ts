/**
 * Keyset paging for every paged list (tokens, audit events, usage): the page size rule
 * (`page_size` 0 means 50, at most 500; STYLE habit 1), the `page_token` format, and cutting a
 * page from `size + 1` rows. A page token is base64url of the last row's key fields joined by
 * "." (the last field may itself contain dots). It is opaque to clients and checked when read:
 * anything else is a 400 "invalid page_token", never a query with a garbled key.
 */
import { RelayError } from "../errors.js";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** The rows to return for a request's `page_size`. */
export function pageSizeOf(requested: number): number {
  return requested <= 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
}

/** The page token naming the position after a row with these key fields. */
export function encodePageToken(fields: readonly (string | number)[]): string {
  return Buffer.from(fields.join(".")).toString("base64url");
}

/**
 * The `count` key fields of a page token; throws 400 when the token has fewer or any is empty.
 * The last field takes the rest of the text, dots included.
 */
export function decodePageToken(token: string, count: number): string[] {
  const text = Buffer.from(token, "base64url").toString("utf8");
  const fields: string[] = [];
  let rest = text;
  for (let i = 1; i < count; i++) {
    const dot = rest.indexOf(".");
    if (dot < 1) throw invalidPageToken();
    fields.push(rest.slice(0, dot));
    rest = rest.slice(dot + 1);
  }
  if (rest === "") throw invalidPageToken();
  fields.push(rest);
  return fields;
}

/** A key field that is a non-negative integer (ids of a sequence, epoch milliseconds). */
export function integerField(field: string, min = 0): number {
  const n = Number(field);
  if (!/^\d{1,16}$/.test(field) || !Number.isSafeInteger(n) || n < min) throw invalidPageToken();
  return n;
}

/** A key field that is a text id matching `shape`. */
export function textField(field: string, shape: RegExp): string {
  if (!shape.test(field)) throw invalidPageToken();
  return field;
}

export interface Page<T> {
  rows: T[];
  /** "" on the last page. */
  nextPageToken: string;
}

/** A page of `size` from `rows` (queried with limit `size + 1`), and the token of the next one. */
export function pageOf<T>(rows: T[], size: number, keyOf: (last: T) => readonly (string | number)[]): Page<T> {
  const page = rows.slice(0, size);
  const last = page[page.length - 1];
  return { rows: page, nextPageToken: rows.length > size && last !== undefined ? encodePageToken(keyOf(last)) : "" };
}

function invalidPageToken(): RelayError {
  return new RelayError("bad_request", "invalid page_token");
}
