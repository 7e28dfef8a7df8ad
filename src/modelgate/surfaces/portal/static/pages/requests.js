// Requests: the request log, newest first, with its filters and pages; one request's attempts,
// timing, verdict and (where its deployment logs them) payloads.
import { api, fill, fmt, h } from "../app.js";

const FILTERS = ["deployment", "project", "provider", "status", "q", "since", "until"];

export const requests = {
  id: "requests",
  title: "Requests",
  project: false,
  render(main, args) {
    const view = h("div", {});
    main.append(view);
    if (args[0]) detail(view, args[0]); else list(view, new URLSearchParams(location.hash.split("?")[1] || ""));
  },
};

function list(view, given) {
  const inputs = Object.fromEntries(FILTERS.map((name) => [name, h("input", {
    name, value: given.get(name) || "", "aria-label": name,
    placeholder: { status: "5xx or 429", q: "text in the error", since: "2030-01-31", until: "2030-02-01" }[name] || "any",
  })]));
  const table = h("div", {});
  const more = h("button", { type: "button", hidden: true }, "Older requests");
  let cursor = null;
  async function page(reset) {
    const params = new URLSearchParams();
    for (const [name, input] of Object.entries(inputs)) if (input.value.trim()) params.set(name, input.value.trim());
    if (!reset && cursor) params.set("cursor", cursor);
    params.set("limit", "50");
    try {
      const found = await api(`/admin/requests?${params}`);
      cursor = found.next_cursor;
      more.hidden = !cursor;
      if (reset) fill(table, rows(found.data, params));
      else table.querySelector("tbody").append(...found.data.map(row));
    } catch (error) {
      fill(table, h("p", { class: "error" }, error.message));
    }
  }
  more.addEventListener("click", () => page(false));
  const form = h("form", { class: "panel row", onsubmit: (event) => { event.preventDefault(); cursor = null; page(true); } },
    FILTERS.map((name) => h("label", {}, name, inputs[name])), h("button", { class: "primary", type: "submit" }, "Search"));
  fill(view, h("h1", {}, "Requests"), form, h("p", { class: "muted" }, "Every request that reached a deployment, newest first; select one for its attempts and payloads."), table, more);
  page(true);
}

function rows(data, params) {
  if (!data.length) {
    return h("div", { class: "empty" }, [...params.keys()].some((k) => k !== "limit")
      ? "No request matches these filters. Clear a filter or widen the time range."
      : "No request yet. Send one from the playground, or with any OpenAI or Anthropic client, and it shows here.");
  }
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Time", "Status", "Deployment", "Answered by", "Project", "Latency", "Tokens in/out", "Price", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, data.map(row))));
}

function status(code) {
  return h("span", { class: `pill ${code >= 500 ? "bad" : code >= 400 ? "warn" : "good"}` }, String(code));
}

function row(r) {
  const open = () => { location.hash = `#/requests/${encodeURIComponent(r.id)}`; };
  return h("tr", { class: "clickable", tabindex: 0, dataset: { request: r.id }, onclick: open,
    onkeydown: (event) => { if (event.key === "Enter") open(); } },
  h("td", {}, fmt.time(r.created_at)), h("td", {}, status(r.status)), h("td", {}, r.deployment),
  h("td", {}, r.provider ? `${r.provider} / ${r.model}` : "–"), h("td", {}, r.project || "–"),
  h("td", { class: "num" }, fmt.ms(r.latency_ms)), h("td", { class: "num" }, `${fmt.int(r.input_tokens)} / ${fmt.int(r.output_tokens)}`),
  h("td", { class: "num" }, fmt.usd(r.price)), h("td", { class: "error" }, r.error || ""));
}

async function detail(view, id) {
  fill(view, h("p", {}, h("a", { href: "#/requests" }, "← All requests")), h("h1", {}, id));
  let r;
  try { r = await api(`/admin/requests/${encodeURIComponent(id)}`); } catch (error) {
    view.append(h("p", { class: "error" }, error.message)); return;
  }
  const facts = [["Time", fmt.time(r.created_at)], ["Status", status(r.status)], ["Deployment", r.deployment],
    ["Answered by", r.provider ? `${r.provider} / ${r.model}` : "no provider"], ["Surface", `${r.surface} (${r.path})`],
    ["Project / key", `${r.project || "–"} / ${r.key || "–"}`], ["Latency", fmt.ms(r.latency_ms)],
    ["Time to first token", fmt.ms(r.ttft_ms)], ["Tokens", `${r.input_tokens} in (${r.cached_input_tokens} cached), ${r.output_tokens} out (${r.reasoning_tokens} reasoning)`],
    ["Cost / price", `${fmt.usd(r.cost)} / ${fmt.usd(r.price)}`], ["Content policy", r.verdict || "none"],
    ["Client", `${r.client_ip || "–"} · ${r.user_agent || "–"}`], ["Trace id", r.trace_id || "not traced"], ["Error", r.error || "–"]];
  view.append(h("dl", { class: "facts panel" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", {}, "Attempts"),
    r.history.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["#", "Provider / model", "Started", "Took", "Outcome", "Error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, r.history.map((a) => h("tr", {}, h("td", {}, String(a.attempt)), h("td", {}, `${a.provider} / ${a.model}`),
        h("td", { class: "num" }, `+${fmt.ms(a.started_ms)}`), h("td", { class: "num" }, fmt.ms(a.duration_ms)),
        h("td", {}, h("span", { class: `pill ${a.outcome === "answered" ? "good" : "bad"}` }, a.outcome)),
        h("td", {}, a.error || "")))))) : h("p", { class: "muted" }, "No upstream was asked (refused before routing)."),
    h("h2", {}, "Request body"), r.request_body === null ? h("p", { class: "muted" }, "Not logged: the deployment's log_payloads is off (or errors, and this one did not fail).") : h("pre", {}, r.request_body),
    h("h2", {}, "Response body"), r.response_body === null ? h("p", { class: "muted" }, "Not logged.") : h("pre", {}, r.response_body));
}
