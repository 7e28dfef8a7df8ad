// Catalog: every model modelgate knows (the built-in catalog and the deployments' own facts), with
// provider, context window, prices and capabilities; filter, sort, compare two to four side by
// side, and deploy one (through POST /admin/deployments).
import { api, fill, fmt, h, portal, toast } from "../app.js";

const MAX_COMPARED = 4;
const COLUMNS = [
  ["name", "Model"], ["source", "Source"], ["context_window", "Context"], ["input_price", "Input $/1M"],
  ["output_price", "Output $/1M"], ["capabilities", "Capabilities"],
];

export const catalog = {
  id: "catalog",
  title: "Catalog",
  project: true,
  render(main) {
    const view = h("div", {});
    main.append(view);
    portal("catalog").then((found) => build(view, found))
      .catch((error) => fill(view, h("h1", {}, "Catalog"), h("p", { class: "error" }, error.message)));
  },
};

function entries(found) {
  const rows = found.deployments.map((d) => ({
    id: `deployment:${d.name}`, name: d.name, source: "deployment", context_window: d.context_window,
    input_price: d.price.input, output_price: d.price.output, cached_input_price: d.price.cached_input,
    max_output_tokens: d.max_output_tokens, capabilities: d.capabilities, mode: d.mode, deployment: d,
    serves: (d.targets || []).map((t) => `${t.provider} / ${t.model}`).join(", "),
  }));
  for (const m of found.models || []) {
    rows.push({ id: `model:${m.publisher}:${m.model}`, name: m.model, source: m.local ? `${m.publisher} (local)` : m.publisher, context_window: m.context_window,
      input_price: m.input_price, output_price: m.output_price, cached_input_price: m.cached_input_price,
      max_output_tokens: m.max_output_tokens, capabilities: m.capabilities, mode: m.mode, model: m,
      serves: m.deployed_as.length ? `deployed as ${m.deployed_as.join(", ")}` : "not deployed" });
  }
  return rows;
}

function build(view, found) {
  const all = entries(found);
  const compared = new Set();
  let sortBy = "name";
  let ascending = true;
  const filter = h("input", { type: "search", placeholder: "Filter by name, provider or capability", "aria-label": "Filter models" });
  const table = h("div", { class: "table-wrap" });
  const comparison = h("div", { "aria-live": "polite" });
  const deploy = h("div", { "aria-live": "polite" });

  function shown() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const rows = all.filter((r) => words.every((w) => `${r.name} ${r.source} ${r.capabilities.join(" ")}`.toLowerCase().includes(w)));
    rows.sort((a, b) => {
      const x = a[sortBy], y = b[sortBy];
      const order = x === null || x === undefined ? 1 : y === null || y === undefined ? -1
        : typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    });
    return rows;
  }

  function draw() {
    const rows = shown();
    fill(table, rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Compare"), COLUMNS.map(([key, label]) => h("th", { "aria-sort": sortBy === key ? (ascending ? "ascending" : "descending") : null },
        h("button", { type: "button", onclick: () => { ascending = sortBy === key ? !ascending : true; sortBy = key; draw(); } }, label))), h("th", {}, ""))),
      h("tbody", {}, rows.map((r) => {
        const box = h("input", { type: "checkbox", checked: compared.has(r.id), "aria-label": `Compare ${r.name}` });
        box.addEventListener("change", () => {
          if (box.checked && compared.size >= MAX_COMPARED) { box.checked = false; toast(`Compare two to ${MAX_COMPARED} models.`); return; }
          if (box.checked) compared.add(r.id); else compared.delete(r.id);
          drawComparison();
        });
        return h("tr", { dataset: { entry: r.id } }, h("td", {}, box), h("td", {}, r.name, h("div", { class: "muted" }, r.serves)),
          h("td", {}, r.source), h("td", { class: "num" }, fmt.int(r.context_window)), h("td", { class: "num" }, fmt.price(r.input_price)),
          h("td", { class: "num" }, fmt.price(r.output_price)), h("td", {}, r.capabilities.join(", ")),
          h("td", {}, r.deployment ? h("a", { href: `#/playground/${encodeURIComponent(r.name)}` }, "Try")
            : found.role === "master" ? h("button", { type: "button", onclick: () => deployForm(r.model) }, "Deploy") : null));
      }))) : h("div", { class: "empty" }, "No model matches the filter."));
  }

  function drawComparison() {
    const chosen = all.filter((r) => compared.has(r.id));
    if (chosen.length < 2) { fill(comparison, chosen.length ? h("p", { class: "muted" }, "Pick one more to compare.") : null); return; }
    const facts = [["Source", (r) => r.source], ["Context window", (r) => fmt.int(r.context_window)],
      ["Max output tokens", (r) => fmt.int(r.max_output_tokens)], ["Input $/1M", (r) => fmt.price(r.input_price)],
      ["Cached input $/1M", (r) => fmt.price(r.cached_input_price)], ["Output $/1M", (r) => fmt.price(r.output_price)],
      ["1k requests of 1k in + 500 out", (r) => (r.input_price === null || r.output_price === null ? "–" : fmt.usd((1000 * 1000 * r.input_price + 1000 * 500 * r.output_price) / 1e6))],
      ["Capabilities", (r) => r.capabilities.join(", ")], ["Served by", (r) => r.serves]];
    fill(comparison, h("h2", {}, "Side by side"), h("div", { class: "table-wrap" }, h("table", { class: "comparison" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), chosen.map((r) => h("th", {}, r.name)))),
      h("tbody", {}, facts.map(([label, get]) => h("tr", {}, h("th", {}, label), chosen.map((r) => h("td", {}, get(r)))))))));
  }

  function deployForm(model) {
    const providers = found.providers || [];
    const guess = providers.find((p) => p.name === model.publisher || p.flavor === model.publisher || p.type === model.publisher);
    const name = h("input", { name: "name", value: model.model, required: true, "aria-label": "Deployment name" });
    const provider = h("select", { name: "provider", "aria-label": "Provider" }, providers.map((p) => h("option", { value: p.name, selected: guess && p.name === guess.name }, `${p.name} (${p.type === "openai" ? p.flavor : p.type})`)));
    const problem = h("p", { class: "error", role: "alert" });
    if (!providers.length) { fill(deploy, h("div", { class: "empty" }, "No provider is configured: add one under providers: in the config file first.")); return; }
    fill(deploy, h("form", {
      class: "panel", "aria-label": `Deploy ${model.model}`,
      onsubmit: async (event) => {
        event.preventDefault();
        fill(problem);
        try {
          await api("/admin/deployments", { method: "POST", body: { name: name.value.trim(), provider: provider.value, model: model.model } });
          toast(`${name.value.trim()} deployed.`);
          location.hash = "#/deployments";
        } catch (error) { fill(problem, error.message); }
      },
    }, h("h2", {}, `Deploy ${model.model}`), h("div", { class: "row" }, h("label", {}, "Name clients call", name), h("label", {}, "Provider", provider),
      h("button", { class: "primary", type: "submit" }, "Deploy")), problem));
    name.focus();
  }

  filter.addEventListener("input", draw);
  fill(view, h("h1", {}, "Catalog"), h("p", { class: "muted" }, found.role === "master"
    ? "The deployments in force and the models of the built-in catalog; prices are USD per million tokens (a deployment's: what callers pay)."
    : "The deployments your key may call; prices are what you pay, USD per million tokens."),
  filter, deploy, comparison, table);
  draw();
}
