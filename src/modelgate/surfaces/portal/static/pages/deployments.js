// Deployments: each with its targets, strategy, health (breaker state, recent latency, error rate),
// limits and content policy, and its traffic today; a deployment made through the API can be edited.
import { api, fill, fmt, h, portal, toast } from "../app.js";

const REFRESH_MS = 5000;

export const deployments = {
  id: "deployments",
  title: "Deployments",
  project: true,
  render(main) {
    const view = h("div", {});
    main.append(view);
    let timer = null;
    const refresh = async () => {
      await load(view);
      timer = setTimeout(refresh, REFRESH_MS);
    };
    refresh();
    return () => clearTimeout(timer);
  },
};

function dayStart() {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())).toISOString();
}

async function load(view) {
  const editing = view.querySelector("textarea:focus");
  if (editing) return; // someone is typing: do not pull the page from under them
  let catalog;
  try { catalog = await portal("catalog"); } catch (error) { fill(view, h("h1", {}, "Deployments"), h("p", { class: "error" }, error.message)); return; }
  const master = catalog.role === "master";
  let health = null, listed = null, traffic = null;
  if (master) {
    try {
      [health, listed, traffic] = await Promise.all([api("/health/deployments"), api("/admin/deployments"),
        api(`/admin/usage?group_by=deployment&since=${dayStart()}`)]);
    } catch (error) { toast(error.message, true); }
  }
  const healthOf = Object.fromEntries(((health && health.deployments) || []).map((d) => [d.name, d]));
  const sourceOf = Object.fromEntries(((listed && listed.data) || []).map((d) => [d.name, d]));
  const trafficOf = Object.fromEntries(((traffic && traffic.data) || []).map((d) => [d.deployment, d]));
  if (!catalog.deployments.length) {
    fill(view, h("h1", {}, "Deployments"), h("div", { class: "empty" }, "No deployment yet. ",
      master ? h("a", { href: "#/catalog" }, "Deploy a model from the catalog") : "Ask an admin to open one to your project", "."));
    return;
  }
  fill(view, h("h1", {}, "Deployments"),
    h("p", { class: "muted" }, master ? "Health is this gateway process's view, refreshed every 5 s; traffic is today's (UTC)." : "The deployments your key may call, and what they cost you."),
    catalog.deployments.map((d) => card(d, healthOf[d.name], sourceOf[d.name], trafficOf[d.name], master, view)));
}

function stateLabel(state) {
  return h("span", { class: `pill ${state === "closed" ? "good" : state === "open" ? "bad" : "warn"}` },
    state === "closed" ? "healthy" : state === "open" ? "cooling down" : state);
}

function card(d, health, source, traffic, master, view) {
  const section = h("section", { class: "panel", "aria-label": d.name, dataset: { deployment: d.name } },
    h("div", { class: "row" }, h("h2", { class: "grow" }, d.name),
      h("a", { href: `#/playground/${encodeURIComponent(d.name)}` }, "Try it")),
    h("dl", { class: "facts" },
      h("dt", {}, "Price per 1M tokens"), h("dd", {}, `${fmt.price(d.price.input)} in · ${fmt.price(d.price.output)} out`),
      h("dt", {}, "Context window"), h("dd", {}, fmt.int(d.context_window)),
      h("dt", {}, "Capabilities"), h("dd", {}, d.capabilities.join(", ") || "–"),
      master ? [h("dt", {}, "Strategy"), h("dd", {}, `${d.strategy}${d.fallbacks.length ? `, then ${d.fallbacks.join(", ")}` : ""}`),
        h("dt", {}, "Limits"), h("dd", {}, [d.rpm ? `${d.rpm} rpm` : "", d.tpm ? `${d.tpm} tpm` : ""].filter(Boolean).join(", ") || "none"),
        h("dt", {}, "Content policy"), h("dd", {}, d.safety || "none"),
        h("dt", {}, "Payload logging"), h("dd", {}, String(d.log_payloads)),
        h("dt", {}, "Today"), h("dd", {}, traffic ? `${fmt.int(traffic.requests)} requests, ${fmt.int(traffic.errors)} errors, ${fmt.usd(traffic.revenue)} charged` : "no request yet"),
        h("dt", {}, "Source"), h("dd", {}, source ? source.source : "config")] : null));
  if (master && health) {
    section.append(h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Provider / model", "Health", "Latency (first byte)", "Error rate", "Requests", "In flight", "Last error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, health.targets.map((t) => h("tr", {}, h("td", {}, `${t.provider} / ${t.model}`), h("td", {}, stateLabel(t.state)),
        h("td", { class: "num" }, fmt.ms(t.latency_ms)), h("td", { class: "num" }, t.error_rate === null ? "–" : `${(t.error_rate * 100).toFixed(1)}%`),
        h("td", { class: "num" }, fmt.int(t.requests)), h("td", { class: "num" }, fmt.int(t.in_flight)), h("td", {}, t.last_error || "")))))));
  }
  if (master && source && source.source === "api") section.append(editor(d, source, view));
  return section;
}

function editor(d, source, view) {
  const text = h("textarea", { rows: 8, class: "mono", "aria-label": `Deployment ${d.name} as JSON` }, JSON.stringify(source.body, null, 2));
  const problem = h("p", { class: "error", role: "alert" });
  return h("details", {}, h("summary", {}, "Edit"),
    h("form", {
      onsubmit: async (event) => {
        event.preventDefault();
        fill(problem);
        let body;
        try { body = JSON.parse(text.value); } catch (error) { fill(problem, `Not JSON: ${error.message}`); return; }
        try {
          await api(`/admin/deployments/${encodeURIComponent(d.name)}`, { method: "PATCH", body });
          toast(`${d.name} saved.`);
          text.blur();
          await load(view);
        } catch (error) { fill(problem, error.message); }
      },
    }, h("label", {}, "The deployment as the config file writes it (keys to change; null removes one)", text), problem,
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Save"),
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Delete deployment ${d.name}?`)) return;
        try { await api(`/admin/deployments/${encodeURIComponent(d.name)}`, { method: "DELETE" }); toast(`${d.name} deleted.`); await load(view); } catch (error) { toast(error.message, true); }
      } }, "Delete"))));
}
