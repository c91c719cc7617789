/**
 * Usage: calls, LLM tokens and cost per time bucket (GetUsage), grouped by provider, model,
 * subject, plan or token, drawn as stacked bars, with a totals table that answers "who spent
 * what" (cost in dollars, unpriced calls apart; issue 24); and the live feed of finished calls
 * (WatchUsage, a server stream that runs while the page is open). The feed is per relay
 * instance (README).
 */
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { UsageGroup, type RefusalCount, type UsageEvent, type UsageRow } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../../../gen/relayapi/v1/common_pb.js";
import { microToUsd } from "../../../src/plans/micro-usd.js";
import { errorMessage, isCanceled } from "../api.js";
import { spansDays, stackedBars, type Series } from "../chart.js";
import { h, userText } from "../dom.js";
import { fmtBucket, fmtDate, fmtNumber, fmtTime, t, type Key } from "../i18n.js";
import type { Page } from "../page.js";
import { badge, button, empty, errorBox, field, loading, options, section, select, table } from "../ui.js";

const RANGES: Record<string, { seconds: number; bucket: number }> = {
  "1h": { seconds: 3600, bucket: 60 },
  "24h": { seconds: 86400, bucket: 3600 },
  "7d": { seconds: 7 * 86400, bucket: 6 * 3600 },
  // Whole days and weeks: answered from the daily roll-ups (issue 23), whatever the raw retention.
  "30d": { seconds: 30 * 86400, bucket: 86400 },
  "365d": { seconds: 365 * 86400, bucket: 7 * 86400 },
};
const MAX_SERIES = 6;
const FEED_MAX = 50;

export const OUTCOME: Record<Outcome, [Key, "ok" | "warn" | "bad" | "muted"]> = {
  [Outcome.UNSPECIFIED]: ["status.unknown", "muted"],
  [Outcome.COMPLETE]: ["outcome.complete", "ok"],
  [Outcome.TRUNCATED]: ["outcome.truncated", "warn"],
  [Outcome.UPSTREAM_ERROR]: ["outcome.upstreamError", "bad"],
  [Outcome.REFUNDED]: ["outcome.refunded", "muted"],
};

export function outcomeBadge(o: Outcome): HTMLElement {
  const [key, tone] = OUTCOME[o] ?? OUTCOME[Outcome.UNSPECIFIED];
  return badge(t(key), tone);
}

interface Totals {
  key: string;
  calls: number;
  errors: number;
  prompt: number;
  completion: number;
  total: number;
  /** Micro-dollars of the priced calls. */
  cost: number;
  unpriced: number;
}

/** Micro-dollars as dollars: exact, at least two decimals, up to six ("0.028050" shows as 0.02805). */
const usd = (micro: number | bigint): string => microToUsd(micro);

export const usagePage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const range = select(
    "range",
    options([
      ["1h", "usage.lastHour"],
      ["24h", "usage.lastDay"],
      ["7d", "usage.lastWeek"],
      ["30d", "usage.lastMonth"],
      ["365d", "usage.lastYear"],
    ]),
    "24h",
  );
  const group = select(
    "group",
    options([
      [String(UsageGroup.PROVIDER), "usage.byProvider"],
      [String(UsageGroup.MODEL), "usage.byModel"],
      [String(UsageGroup.SUBJECT), "usage.bySubject"],
      [String(UsageGroup.PLAN), "usage.byPlan"],
      [String(UsageGroup.TOKEN), "usage.byToken"],
      [String(UsageGroup.UNSPECIFIED), "usage.noGroup"],
    ]),
    String(UsageGroup.PROVIDER),
  );
  const charts = h("div", { class: "charts", "aria-live": "polite" }, loading());
  const refused = h("div", { "aria-live": "polite", "data-testid": "refusals" });
  const storage = h("p", { class: "hint", "data-testid": "storage" });
  const feed = h("ol", { class: "feed", "aria-live": "polite", "aria-label": t("usage.live"), "data-testid": "live-feed" });
  const feedState = h("p", { class: "feed-state", role: "status" });
  const feedEmpty = empty(t("usage.waiting"));

  const labelOf = (key: string): string => (Number(group.value) === UsageGroup.UNSPECIFIED ? t("usage.all") : key === "" ? t("usage.unknownKey") : key);

  /** Redraws the last data (the charts are drawn for the width they have). */
  let drawn: (() => void) | undefined;
  let drawnWidth = 0;
  let resizeTimer: ReturnType<typeof setTimeout> | undefined;
  const onResize = (): void => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (Math.abs(charts.clientWidth - drawnWidth) > 40) drawn?.();
    }, 150);
  };
  window.addEventListener("resize", onResize);
  signal.addEventListener("abort", () => {
    window.removeEventListener("resize", onResize);
    clearTimeout(resizeTimer);
  });

  async function load(): Promise<void> {
    const r = RANGES[range.value] ?? RANGES["24h"]!;
    const endMs = Date.now();
    const startMs = (Math.floor(endMs / 1000 / r.bucket) * r.bucket - (Math.ceil(r.seconds / r.bucket) - 1) * r.bucket) * 1000;
    try {
      const { rows } = await api.admin.getUsage(
        {
          start: timestampFromDate(new Date(startMs)),
          end: timestampFromDate(new Date(endMs)),
          groupBy: Number(group.value) as UsageGroup,
          bucketSeconds: r.bucket,
        },
        { signal },
      );
      drawn = () => charts.replaceChildren(...render(rows, startMs, endMs, r.bucket));
      drawn();
    } catch (e) {
      if (!isCanceled(e)) charts.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  /** The database's size and the retention settings (GetStorage); a failure leaves the line empty. */
  async function loadStorage(): Promise<void> {
    try {
      const s = await api.admin.getStorage({}, { signal });
      const days = (d: number | undefined): string => (d ? t("usage.days", { n: fmtNumber(d) }) : t("usage.forever"));
      storage.replaceChildren(
        t("usage.storage", { db: (Number(s.databaseBytes) / 1_048_576).toFixed(1), raw: days(s.retentionDays[0]), rollups: days(s.retentionDays[1]) }),
      );
    } catch {
      storage.replaceChildren();
    }
  }

  /** Refusals by reason, from this instance's counters (they are not usage records: no call was made). */
  async function loadRefusals(): Promise<void> {
    try {
      const { refusals } = await api.admin.getRefusals({}, { signal });
      refused.replaceChildren(
        refusals.length === 0
          ? empty(t("usage.refusedNone"))
          : table(
              t("usage.refused"),
              [
                {
                  label: t("usage.reason"),
                  cell: (x: RefusalCount) => h("span", { "data-reason": x.reason }, refusalLabel(x.reason), " ", h("code", null, x.reason)),
                },
                { label: t("usage.count"), cell: (x) => fmtNumber(x.count), class: "num" },
              ],
              refusals,
            ),
      );
    } catch (e) {
      if (!isCanceled(e)) refused.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  function render(rows: UsageRow[], startMs: number, endMs: number, bucket: number): HTMLElement[] {
    if (rows.length === 0) return [empty(t("usage.none"))];
    const buckets: Date[] = [];
    for (let ms = startMs; ms < endMs; ms += bucket * 1000) buckets.push(new Date(ms));
    const index = (d: Date): number => Math.floor((d.getTime() - startMs) / (bucket * 1000));
    const totals = new Map<string, Totals>();
    for (const row of rows) {
      const tot = totals.get(row.key) ?? { key: row.key, calls: 0, errors: 0, prompt: 0, completion: 0, total: 0, cost: 0, unpriced: 0 };
      tot.calls += Number(row.calls);
      tot.errors += Number(row.errors);
      tot.prompt += Number(row.usage?.promptTokens ?? 0n);
      tot.completion += Number(row.usage?.completionTokens ?? 0n);
      tot.total += Number(row.usage?.totalTokens ?? 0n);
      tot.cost += Number(row.costMicroUsd);
      tot.unpriced += Number(row.unpricedCalls);
      totals.set(row.key, tot);
    }
    // Who spent most first; calls then tokens where nothing is priced.
    const ranked = [...totals.values()].sort((a, b) => b.cost - a.cost || b.calls - a.calls || b.total - a.total);
    const shown = ranked.slice(0, MAX_SERIES).map((x) => x.key);
    const seriesOf = (metric: (r: UsageRow) => number): Series[] => {
      const bySeries = new Map<string, number[]>(shown.map((k) => [k, buckets.map(() => 0)]));
      const other = buckets.map(() => 0);
      for (const row of rows) {
        const i = index(row.bucketStart ? timestampDate(row.bucketStart) : new Date(startMs));
        if (i < 0 || i >= buckets.length) continue;
        const target = bySeries.get(row.key) ?? other;
        target[i] = (target[i] ?? 0) + metric(row);
      }
      const list: Series[] = shown.map((k) => ({ label: labelOf(k), values: bySeries.get(k) ?? [] }));
      if (other.some((v) => v > 0)) list.push({ label: t("usage.other"), values: other });
      return list;
    };
    // The card's inner width (its padding and border are about 44px); SVG scales down below it.
    drawnWidth = charts.clientWidth;
    const width = Math.min(1160, (drawnWidth || root.clientWidth || 960) - 4);
    // Dates on the axis whenever the window crosses midnight, not only past 24 hours.
    const withDay = spansDays(buckets);
    const timeLabel = (d: Date): string => fmtBucket(d, withDay);
    const chart = (title: string, metric: (r: UsageRow) => number): HTMLElement =>
      stackedBars({ title, buckets, series: seriesOf(metric), width, format: (n) => fmtNumber(Math.round(n)), timeLabel });
    return [
      chart(t("usage.calls"), (r) => Number(r.calls)),
      chart(t("usage.tokens"), (r) => Number(r.usage?.totalTokens ?? 0n)),
      stackedBars({
        title: t("usage.cost"),
        buckets,
        series: seriesOf((r) => Number(r.costMicroUsd)),
        width,
        format: (n) => `$${usd(Math.round(n))}`,
        timeLabel,
      }),
      table(
        t("usage.totals"),
        [
          { label: t("usage.key"), cell: (x: Totals) => userText(labelOf(x.key), { clip: true }) },
          { label: t("usage.calls"), cell: (x) => fmtNumber(x.calls), class: "num" },
          { label: t("usage.errors"), cell: (x) => fmtNumber(x.errors), class: "num" },
          { label: t("usage.prompt"), cell: (x) => fmtNumber(x.prompt), class: "num" },
          { label: t("usage.completion"), cell: (x) => fmtNumber(x.completion), class: "num" },
          { label: t("usage.total"), cell: (x) => fmtNumber(x.total), class: "num" },
          { label: t("usage.cost"), cell: (x) => h("span", { "data-cost-micro-usd": String(x.cost) }, `$${usd(x.cost)}`), class: "num" },
          { label: t("usage.unpriced"), cell: (x) => fmtNumber(x.unpriced), class: "num" },
        ],
        ranked,
      ),
      h("p", { class: "hint" }, t("usage.costNote")),
    ];
  }

  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
  signal.addEventListener("abort", () => clearTimeout(refreshTimer));
  /** New calls show in the chart too, a moment later (records are written in batches). */
  const refreshSoon = (): void => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      void load();
      void loadRefusals();
    }, 1500);
  };

  // Model (the client's) and subject (the issuer's) are isolated and clipped: a right-to-left
  // override in either once reversed the whole line, token id included (issue 18, finding 7).
  const eventItem = (e: UsageEvent): HTMLElement =>
    h(
      "li",
      { "data-token-id": e.tokenId },
      h("time", { datetime: e.at ? fmtDate(e.at, true) : "" }, e.at ? fmtTime(e.at) : ""),
      " ",
      outcomeBadge(e.outcome),
      " ",
      h("strong", null, userText(e.provider)),
      e.model ? [" · ", userText(e.model, { clip: true })] : "",
      " · ",
      e.subject ? userText(e.subject, { clip: true }) : t("usage.noSubject"),
      " · ",
      h("code", null, userText(e.tokenId)),
      " · ",
      `HTTP ${e.status}`,
      " · ",
      t("usage.eventTokens", { n: fmtNumber(e.usage?.totalTokens ?? 0n) }),
      " · ",
      e.usage?.costMicroUsd === undefined ? t("usage.eventUnpriced") : t("usage.eventCost", { usd: usd(e.usage.costMicroUsd) }),
      e.plan ? [" · ", userText(e.plan, { clip: true })] : "",
      " · ",
      `${fmtNumber(e.latencyMs)} ms`,
    );

  async function watch(): Promise<void> {
    try {
      const stream = api.admin.watchUsage({}, { signal });
      // The relay sends the stream's headers with its first event, so "live" is shown from the
      // moment the request is made; a refused key or a lost relay replaces it with the error.
      feedState.replaceChildren(badge(t("usage.liveOn"), "ok"), " ", t("usage.liveNote"));
      for await (const res of stream) {
        if (!res.event) continue;
        feedEmpty.remove();
        feed.prepend(eventItem(res.event));
        while (feed.children.length > FEED_MAX) feed.lastElementChild?.remove();
        refreshSoon();
      }
      if (!signal.aborted)
        feedState.replaceChildren(
          t("usage.feedEnded"),
          " ",
          button(t("usage.reconnect"), () => void watch()),
        );
    } catch (e) {
      if (isCanceled(e) || signal.aborted) return;
      feedState.replaceChildren(
        errorBox(errorMessage(e)),
        button(t("usage.reconnect"), () => void watch()),
      );
    }
  }

  range.addEventListener("change", () => void load());
  group.addEventListener("change", () => void load());
  const controls = h(
    "form",
    { class: "filters", "aria-label": t("usage.controls") },
    field(t("usage.range"), range),
    field(t("usage.group"), group),
    button(t("common.refresh"), () => {
      void load();
      void loadRefusals();
    }),
  );
  controls.addEventListener("submit", (ev) => ev.preventDefault());
  root.append(
    h("h1", null, t("nav.usage")),
    section(t("usage.overTime"), controls, charts, storage),
    section(t("usage.refused"), h("p", { class: "hint" }, t("usage.refusedNote")), refused),
    section(t("usage.live"), feedState, feedEmpty, feed),
  );
  void watch();
  void loadRefusals();
  void loadStorage();
  await load();
};

const REFUSAL_KEYS: Record<string, Key> = {
  unauthenticated: "refusal.unauthenticated",
  permission_denied: "refusal.permission_denied",
  rate_limited: "refusal.rate_limited",
  calls_exhausted: "refusal.calls_exhausted",
  budget_exhausted: "refusal.budget_exhausted",
  quota_exhausted: "refusal.quota_exhausted",
};

/** A reason's words; a code the console does not know shows as its code alone. */
function refusalLabel(reason: string): string {
  const key = REFUSAL_KEYS[reason];
  return key === undefined ? "" : t(key);
}
