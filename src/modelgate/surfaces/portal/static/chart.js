// Small SVG charts drawn from numbers (no library): stacked bars over time buckets, one colour per
// series. Labels are text nodes; nothing from data is parsed as markup.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * Stacked bars: ``buckets`` are x positions (unix seconds), ``series`` is [{name, values}] with one
 * value per bucket. Returns an element with the chart and its legend.
 */
export function stackedBars({ title, buckets, series, format = (v) => String(v), label = (b) => String(b) }) {
  const width = 720, height = 220, left = 56, bottom = 22, top = 8;
  const totals = buckets.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = Math.max(...totals, 0) || 1;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  chart.append(svg("title", {}, title));
  const plotW = width - left - 8, plotH = height - top - bottom;
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotH * (1 - fraction);
    chart.append(svg("line", { class: "axis", x1: left, x2: width - 8, y1: y, y2: y }));
    chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, format(max * fraction)));
  }
  const step = plotW / Math.max(buckets.length, 1);
  const barW = Math.max(1, step * 0.8);
  buckets.forEach((bucket, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const value = s.values[i] || 0;
      if (!value) return;
      const h = (value / max) * plotH;
      const rect = svg("rect", { class: `s${(k % 5) + 1}`, x: left + i * step + (step - barW) / 2, y: top + plotH - base - h, width: barW, height: h });
      rect.append(svg("title", {}, `${s.name}: ${format(value)} (${label(bucket)})`));
      chart.append(rect);
      base += h;
    });
  });
  const ticks = Math.min(6, buckets.length);
  for (let t = 0; t < ticks; t++) {
    const i = Math.round((t * (buckets.length - 1)) / Math.max(ticks - 1, 1));
    chart.append(svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle" }, label(buckets[i])));
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, k) => {
    const item = document.createElement("span");
    item.className = `s${(k % 5) + 1}`;
    item.textContent = s.name;
    legend.append(item);
  });
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.className = "muted";
  caption.textContent = title;
  figure.append(caption, chart, legend);
  return figure;
}
