/**
 * A stacked bar chart drawn as SVG by hand: one bar per time bucket, one colour per series.
 * Each bar segment has a <title> (hover / screen reader text); the legend is HTML beside it.
 * Series labels may be subjects or model names: isolated and clipped (dom.ts `userText`).
 */
import { h, isolated, svg, userText } from "./dom.js";

export interface Series {
  label: string;
  values: number[];
}

export const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#64748b"];

/** The smallest of 1, 2, 5 x 10^k at or above `v` (at least 1). */
function niceCeil(v: number): number {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * Whether the axis labels need the date: the buckets span more than one local calendar day. A
 * 24-hour window from 14:00 crosses midnight, and "09:00" alone would not say which day.
 */
export function spansDays(buckets: readonly Date[]): boolean {
  const first = buckets[0];
  const last = buckets[buckets.length - 1];
  if (first === undefined || last === undefined) return false;
  return first.getFullYear() !== last.getFullYear() || first.getMonth() !== last.getMonth() || first.getDate() !== last.getDate();
}

export interface ChartOptions {
  title: string;
  buckets: Date[];
  series: Series[];
  width: number;
  format: (n: number) => string;
  timeLabel: (d: Date) => string;
}

export function stackedBars(o: ChartOptions): HTMLElement {
  const W = Math.max(300, Math.round(o.width));
  const H = 220;
  const m = { left: 52, right: 8, top: 12, bottom: 28 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const n = Math.max(1, o.buckets.length);
  const totals = Array.from({ length: n }, (_, i) => o.series.reduce((s, x) => s + (x.values[i] ?? 0), 0));
  const top = niceCeil(Math.max(0, ...totals));
  const y = (v: number): number => m.top + plotH - (v / top) * plotH;
  const slot = plotW / n;
  const barW = Math.max(1, slot * 0.78);
  const grand = totals.reduce((a, b) => a + b, 0);

  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    width: W,
    height: H,
    role: "img",
    "aria-label": `${o.title}: ${o.format(grand)}`,
    class: "chart",
  });
  // A middle line only where it falls on a whole number (a chart of one call has 0 and 1).
  for (const v of Number.isInteger(top / 2) ? [0, top / 2, top] : [0, top]) {
    chart.append(
      svg("line", { x1: m.left, x2: W - m.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, o.format(v)),
    );
  }
  o.buckets.forEach((b, i) => {
    let base = 0;
    o.series.forEach((s, si) => {
      const v = s.values[i] ?? 0;
      if (v <= 0) return;
      const x = m.left + i * slot + (slot - barW) / 2;
      chart.append(
        svg(
          "rect",
          { x, y: y(base + v), width: barW, height: Math.max(0.5, y(base) - y(base + v)), fill: PALETTE[si % PALETTE.length] },
          svg("title", null, `${isolated(s.label)}: ${o.format(v)} (${o.timeLabel(b)})`),
        ),
      );
      base += v;
    });
  });
  const ticks = n === 1 ? [0] : [0, Math.floor((n - 1) / 2), n - 1];
  for (const i of ticks) {
    const b = o.buckets[i];
    if (!b) continue;
    const anchor = i === 0 && n > 1 ? "start" : i === n - 1 && n > 1 ? "end" : "middle";
    const x = anchor === "start" ? m.left : anchor === "end" ? W - m.right : m.left + i * slot + slot / 2;
    chart.append(svg("text", { x, y: H - 8, "text-anchor": anchor, class: "axis" }, o.timeLabel(b)));
  }
  const legend = h(
    "ul",
    { class: "legend" },
    ...o.series.map((s, si) =>
      h(
        "li",
        null,
        svg("svg", { width: 12, height: 12, "aria-hidden": "true" }, svg("rect", { width: 12, height: 12, rx: 2, fill: PALETTE[si % PALETTE.length] })),
        " ",
        userText(s.label, { clip: true }),
      ),
    ),
  );
  return h("figure", { class: "chart-box" }, h("figcaption", null, o.title), h("div", { class: "chart-scroll" }, chart), legend);
}
