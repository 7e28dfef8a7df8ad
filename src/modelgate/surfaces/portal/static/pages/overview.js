// Overview: requests, tokens, cost, errors and latency over the last hour, day or month, by
// deployment or provider, as charts; the targets' breaker states and the latest failures. Live:
// it refreshes itself while it is open.
import { api, fill, fmt, h, portal } from "../app.js";
import { stackedBars } from "../chart.js";

const REFRESH_MS = 10000;
const TOP = 5; // series a chart shows; the rest are "other"

export const overview = {
  id: "overview",
  title: "Overview",
  project: false,
  render(main) {
    let window = "hour";
    let by = "deployment";
    let timer = null;
    const figures = h("div", { "aria-live": "off" });
    const choose = (name, values, current, set) => h("div", { class: "tabs", role: "tablist", "aria-label": name },
      values.map((value) => h("button", { type: "button", role: "tab", "aria-selected": String(value === current()),
        onclick: (event) => { set(value); for (const b of event.target.parentNode.children) b.setAttribute("aria-selected", String(b === event.target)); refresh(); } }, value)));
    main.append(h("h1", {}, "Overview"),
      h("div", { class: "row" }, choose("Window", ["hour", "day", "month"], () => window, (v) => { window = v; }),
        choose("By", ["deployment", "provider"], () => by, (v) => { by = v; })),
      figures);
    async function refresh() {
      clearTimeout(timer);
      try {
        const [stats, health, failures] = await Promise.all([
          portal(`overview?window=${window}&by=${by}`), api("/health/deployments"), api("/admin/requests?status=5xx&limit=5")]);
        draw(figures, stats, health, failures.data);
      } catch (error) {
        fill(figures, h("p", { class: "error" }, error.message));
      }
      timer = setTimeout(refresh, REFRESH_MS);
    }
    refresh();
    return () => clearTimeout(timer);
  },
};

function draw(el, stats, health, failures) {
  const totals = stats.series.reduce((t, r) => ({
    requests: t.requests + r.requests, errors: t.errors + r.errors, tokens: t.tokens + r.input_tokens + r.output_tokens,
    cost: t.cost + r.cost, price: t.price + r.price,
  }), { requests: 0, errors: 0, tokens: 0, cost: 0, price: 0 });
  const lat = stats.latency;
  const cards = [["Requests", fmt.int(totals.requests)], ["Errors", `${fmt.int(totals.errors)}${totals.requests ? ` (${((100 * totals.errors) / totals.requests).toFixed(1)}%)` : ""}`],
    ["Tokens", fmt.int(totals.tokens)], ["Provider cost", fmt.usd(totals.cost)], ["Charged", fmt.usd(totals.price)],
    ["Latency p50 / p95", `${fmt.ms(lat.p50)} / ${fmt.ms(lat.p95)}`], ["First token p50 / p95", `${fmt.ms(lat.ttft_p50)} / ${fmt.ms(lat.ttft_p95)}`]];
  const targets = health.deployments.flatMap((d) => d.targets.map((t) => ({ ...t, deployment: d.name })));
  const cooling = targets.filter((t) => t.state !== "closed");
  fill(el,
    h("div", { class: "cards" }, cards.map(([label, value]) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value)))),
    totals.requests === 0 ? h("div", { class: "empty" }, `No request in the last ${stats.window}. Send one from the `, h("a", { href: "#/playground" }, "playground"),
      " or point any OpenAI or Anthropic client at this gateway.") : charts(stats),
    h("p", { class: "muted" }, `Percentiles of the latest ${fmt.int(lat.sample)} requests of the window (${fmt.int(lat.streamed)} streamed).`),
    h("h2", {}, "Breakers"),
    cooling.length ? h("ul", {}, cooling.map((t) => h("li", {}, h("span", { class: "pill bad" }, t.state), ` ${t.deployment}: ${t.provider} / ${t.model} — ${t.reason || t.last_error || ""}`)))
      : h("p", { class: "muted" }, `All ${targets.length} targets are healthy.`),
    h("h2", {}, "Latest failures"),
    failures.length ? h("ul", {}, failures.map((r) => h("li", {}, h("a", { href: `#/requests/${encodeURIComponent(r.id)}` }, fmt.time(r.created_at)),
      ` ${r.status} ${r.deployment}: ${r.error || ""}`))) : h("p", { class: "muted" }, "No failed request in the log."));
}

function charts(stats) {
  const step = stats.bucket_s;
  const start = Math.floor(Date.parse(stats.since) / 1000 / step) * step;
  const buckets = [];
  for (let b = start; b <= Date.now() / 1000; b += step) buckets.push(b);
  const groups = new Map();
  for (const row of stats.series) {
    const name = row.group || "(none)";
    if (!groups.has(name)) groups.set(name, new Map());
    const at = groups.get(name);
    const slot = at.get(row.bucket) || { requests: 0, errors: 0, tokens: 0, price: 0 };
    slot.requests += row.requests; slot.errors += row.errors; slot.tokens += row.input_tokens + row.output_tokens; slot.price += row.price;
    at.set(row.bucket, slot);
  }
  const ranked = [...groups.entries()].sort((a, b) => sum(b[1], "requests") - sum(a[1], "requests"));
  const shown = ranked.slice(0, TOP);
  const rest = ranked.slice(TOP);
  const seriesOf = (measure) => {
    const out = shown.map(([name, at]) => ({ name, values: buckets.map((b) => (at.get(b) || {})[measure] || 0) }));
    if (rest.length) out.push({ name: "other", values: buckets.map((b) => rest.reduce((s, [, at]) => s + ((at.get(b) || {})[measure] || 0), 0)) });
    return out;
  };
  const label = (b) => {
    const d = new Date(b * 1000);
    return stats.window === "month" ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  };
  return h("div", { class: "grid2" },
    h("div", { class: "panel" }, stackedBars({ title: `Requests by ${stats.by}`, buckets, series: seriesOf("requests"), format: fmt.int, label })),
    h("div", { class: "panel" }, stackedBars({ title: `Errors by ${stats.by}`, buckets, series: seriesOf("errors"), format: fmt.int, label })),
    h("div", { class: "panel" }, stackedBars({ title: `Tokens by ${stats.by}`, buckets, series: seriesOf("tokens"), format: fmt.int, label })),
    h("div", { class: "panel" }, stackedBars({ title: `Charged (USD) by ${stats.by}`, buckets, series: seriesOf("price"), format: (v) => fmt.usd(v), label })));
}

function sum(at, measure) {
  let total = 0;
  for (const slot of at.values()) total += slot[measure];
  return total;
}
