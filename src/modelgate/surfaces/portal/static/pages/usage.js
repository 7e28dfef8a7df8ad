// Usage and statements: /admin/usage's report grouped as chosen, over a period, as a table and a
// chart, and what is owed to each provider; both as CSV downloads.
import { api, fill, fmt, h, portal, session } from "../app.js";
import { stackedBars } from "../chart.js";

const GROUPS = ["deployment", "project", "key", "provider", "model", "day", "verdict"];

function thisMonth() {
  const now = new Date();
  return `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
}

export const usage = {
  id: "usage",
  title: "Usage",
  project: true,
  render(main) {
    if (session().role !== "master") { projectUsage(main); return; }
    const period = h("input", { name: "period", value: thisMonth(), placeholder: "2030-01 or 2030-01-31", "aria-label": "Period" });
    const group = h("select", { name: "group_by", "aria-label": "Group by" }, GROUPS.map((g) => h("option", { value: g }, g)));
    const by = h("select", { name: "then_by", "aria-label": "Then by" }, h("option", { value: "" }, "nothing"), GROUPS.map((g) => h("option", { value: g }, g)));
    const report = h("div", {});
    const statements = h("div", {});
    async function load() {
      const groups = [group.value, by.value].filter((g, i, all) => g && all.indexOf(g) === i);
      const params = new URLSearchParams({ period: period.value.trim(), group_by: groups.join(",") });
      try {
        const [found, owed, daily] = await Promise.all([api(`/admin/usage?${params}`), api(`/admin/statements?period=${encodeURIComponent(period.value.trim())}`),
          api(`/admin/usage?${new URLSearchParams({ period: period.value.trim(), group_by: "day" })}`)]);
        fill(report, table(found, groups), h("p", {}, h("a", { href: `/ui/api/gw/admin/usage?${params}&format=csv`, download: "usage.csv" }, "Download as CSV")),
          daily.data.length > 1 ? h("div", { class: "panel" }, stackedBars({ title: "Charged per day (USD)", buckets: daily.data.map((r) => r.day),
            series: [{ name: "charged", values: daily.data.map((r) => r.revenue) }],
            format: (v) => fmt.usd(v), label: (d) => d.slice(5) })) : null);
        fill(statements, owed.data.length ? owed.data.map(statement) : h("div", { class: "empty" }, "No provider was used in this period."),
          h("p", {}, h("a", { href: `/ui/api/gw/admin/statements?period=${encodeURIComponent(period.value.trim())}&format=csv`, download: "statements.csv" }, "Download statements as CSV")));
      } catch (error) {
        fill(report, h("p", { class: "error" }, error.message));
        fill(statements);
      }
    }
    main.append(h("h1", {}, "Usage"),
      h("form", { class: "panel row", onsubmit: (event) => { event.preventDefault(); load(); } },
        h("label", {}, "Period (month or day, UTC)", period), h("label", {}, "Group by", group), h("label", {}, "Then by", by),
        h("button", { class: "primary", type: "submit" }, "Show")),
      report, h("h2", {}, "Statements: what is owed to each provider"), statements);
    load();
  },
};

function table(found, groups) {
  if (!found.data.length) return h("div", { class: "empty" }, "No usage in this period. Requests show here once they are metered.");
  const measures = [["requests", fmt.int], ["errors", fmt.int], ["input_tokens", fmt.int], ["output_tokens", fmt.int], ["cost", fmt.usd], ["revenue", fmt.usd], ["margin", fmt.usd]];
  const row = (r, total) => h("tr", {}, groups.map((g, i) => h("td", {}, total ? (i === 0 ? "Total" : "") : (r[g] ?? "–"))),
    measures.map(([m, f]) => h("td", { class: "num" }, f(r[m]))));
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, groups.map((g) => h("th", {}, g)), measures.map(([m]) => h("th", { class: "num" }, m.replace("_", " "))))),
    h("tbody", {}, found.data.map((r) => row(r, false)), row(found.totals, true))));
}

function statement(s) {
  return h("section", { class: "panel" }, h("h3", {}, `${s.provider}: ${fmt.usd(s.total)} owed`),
    h("p", { class: "muted" }, `${fmt.int(s.requests)} requests, ${fmt.usd(s.revenue)} charged to projects`),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Model", "Deployments", "Requests", "Input tokens", "Output tokens", "Cost", "Charged"].map((t) => h("th", {}, t)))),
      h("tbody", {}, s.lines.map((l) => h("tr", {}, h("td", {}, l.model || "–"), h("td", {}, l.deployments.join(", ")), h("td", { class: "num" }, fmt.int(l.requests)),
        h("td", { class: "num" }, fmt.int(l.input_tokens)), h("td", { class: "num" }, fmt.int(l.output_tokens)), h("td", { class: "num" }, fmt.usd(l.cost)), h("td", { class: "num" }, fmt.usd(l.revenue))))))));
}

// A project key's view: its own project's usage, by key, deployment, model or day.
function projectUsage(main) {
  const period = h("input", { name: "period", value: thisMonth(), placeholder: "2030-01 or 2030-01-31", "aria-label": "Period" });
  const group = h("select", { name: "group_by", "aria-label": "Group by" }, ["key", "deployment", "model", "day"].map((g) => h("option", { value: g }, g)));
  const report = h("div", {});
  async function load() {
    try {
      const found = await portal(`usage?${new URLSearchParams({ period: period.value.trim(), group_by: group.value })}`);
      const measures = [["requests", fmt.int], ["errors", fmt.int], ["input_tokens", fmt.int], ["output_tokens", fmt.int], ["charged", fmt.usd]];
      fill(report, found.data.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, found.group_by), measures.map(([m]) => h("th", { class: "num" }, m.replace("_", " "))))),
        h("tbody", {}, found.data.map((r) => h("tr", {}, h("td", {}, r[found.group_by] ?? "–"), measures.map(([m, f]) => h("td", { class: "num" }, f(r[m])))))))) :
        h("div", { class: "empty" }, `No usage of project ${found.project} in this period. Calls made with its keys show here.`));
    } catch (error) {
      fill(report, h("p", { class: "error" }, error.message));
    }
  }
  main.append(h("h1", {}, `Usage of ${session().project}`),
    h("form", { class: "panel row", onsubmit: (event) => { event.preventDefault(); load(); } },
      h("label", {}, "Period (month or day, UTC)", period), h("label", {}, "Group by", group),
      h("button", { class: "primary", type: "submit" }, "Show")), report);
  load();
}
