/**
 * The console's language: every string it shows comes from `t(key)`, out of the English and
 * Chinese dictionaries (strings-en.ts, strings-zh.ts; the original projects' users wrote in
 * Chinese), and dates and numbers are formatted for the chosen language.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Lang } from "./session.js";
import { en, type Key } from "./strings-en.js";
import { zh } from "./strings-zh.js";

export type { Key };

const DICTIONARIES: Record<Lang, Record<Key, string>> = { en, zh };
let lang: Lang = "en";

export function setLang(l: Lang): void {
  lang = l;
}

export function currentLang(): Lang {
  return lang;
}

/** The string for `key` in the current language, `{name}` placeholders filled from `params`. */
export function t(key: Key, params: Record<string, string | number | bigint> = {}): string {
  return DICTIONARIES[lang][key].replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m));
}

/** Both dictionaries, for the completeness test. */
export const dictionaries = DICTIONARIES;

const locale = (): string => (lang === "zh" ? "zh-CN" : "en");
const toDate = (v: Timestamp | Date): Date => (v instanceof Date ? v : timestampDate(v));

/** A date and time in the current language; `iso` gives the machine form for `datetime`. */
export function fmtDate(v: Timestamp | Date, iso = false): string {
  const d = toDate(v);
  return iso ? d.toISOString() : new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(d);
}

export function fmtTime(v: Timestamp | Date): string {
  return new Intl.DateTimeFormat(locale(), { timeStyle: "medium" }).format(toDate(v));
}

/** A time bucket's start: hours and minutes, with the day when buckets span hours. */
export function fmtBucket(v: Timestamp | Date, withDay: boolean): string {
  const opts: Intl.DateTimeFormatOptions = withDay ? { month: "short", day: "numeric", hour: "numeric" } : { hour: "numeric", minute: "2-digit" };
  return new Intl.DateTimeFormat(locale(), opts).format(toDate(v));
}

export function fmtNumber(n: number | bigint): string {
  return new Intl.NumberFormat(locale()).format(n);
}

/** "in 59 minutes", "3 days ago". */
export function fmtRelative(v: Timestamp | Date): string {
  const seconds = (toDate(v).getTime() - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  if (abs < 90) return rtf.format(Math.round(seconds), "second");
  if (abs < 90 * 60) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 36 * 3600) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
