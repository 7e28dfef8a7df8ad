// Projects and keys: create a key (shown once, with a copy button), list, revoke; each project's
// limits and its spend against its budget.
import { ApiError, api, fill, fmt, h, toast } from "../app.js";

export const keys = {
  id: "keys",
  title: "Projects & keys",
  project: false,
  render(main) {
    const view = h("div", {});
    main.append(view);
    load(view);
  },
};

function periodStart(period) {
  const now = new Date();
  return period === "day"
    ? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()))
    : new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

async function load(view) {
  let projects, keyList, monthSpend, daySpend;
  try {
    [projects, keyList, monthSpend, daySpend] = await Promise.all([
      api("/admin/projects"), api("/admin/keys?include_revoked=true"),
      api(`/admin/usage?group_by=project&since=${periodStart("month").toISOString()}`),
      api(`/admin/usage?group_by=project&since=${periodStart("day").toISOString()}`),
    ]);
  } catch (error) {
    fill(view, h("h1", {}, "Projects & keys"), h("p", { class: "error" }, error.message));
    return;
  }
  const spent = (period, project) => {
    const rows = (period === "day" ? daySpend : monthSpend).data;
    const row = rows.find((r) => r.project === project);
    return row ? row.revenue : 0;
  };
  const created = h("div", { "aria-live": "polite" });
  fill(view, h("h1", {}, "Projects & keys"), createForm(view, created, projects.data), created,
    h("h2", {}, "Projects"), projectTable(projects.data, spent),
    h("h2", {}, "Keys"), keyTable(view, keyList.data));
}

function createForm(view, created, projects) {
  const project = h("input", { name: "project", required: true, list: "project-names", placeholder: "team-a", "aria-label": "Project" });
  const name = h("input", { name: "name", placeholder: "ci-bot (optional)", "aria-label": "Key name" });
  const rpm = h("input", { name: "rpm", type: "number", min: 1, placeholder: "none", "aria-label": "Requests per minute" });
  const tpm = h("input", { name: "tpm", type: "number", min: 1, placeholder: "none", "aria-label": "Tokens per minute" });
  const budget = h("input", { name: "budget", type: "number", min: 0, step: "0.01", placeholder: "none", "aria-label": "Budget (USD)" });
  const period = h("select", { name: "budget_period", "aria-label": "Budget period" }, h("option", { value: "month" }, "per month"), h("option", { value: "day" }, "per day"));
  const problem = h("p", { class: "error", role: "alert" });
  const form = h("form", {
    class: "panel",
    onsubmit: async (event) => {
      event.preventDefault();
      fill(problem);
      const body = { project: project.value.trim() };
      if (name.value.trim()) body.name = name.value.trim();
      if (rpm.value) body.rpm = Number(rpm.value);
      if (tpm.value) body.tpm = Number(tpm.value);
      if (budget.value) { body.budget = Number(budget.value); body.budget_period = period.value; }
      try {
        const key = await api("/admin/keys", { method: "POST", body });
        await load(view);
        showKey(view.querySelector("[aria-live]"), key);
      } catch (error) {
        fill(problem, error instanceof ApiError && error.param ? `${error.param}: ${error.message}` : error.message);
      }
    },
  },
  h("h2", {}, "Create a key"),
  h("datalist", { id: "project-names" }, projects.map((p) => h("option", { value: p.name }))),
  h("div", { class: "row" }, h("label", {}, "Project (made if new)", project), h("label", {}, "Name", name),
    h("label", {}, "Requests / min", rpm), h("label", {}, "Tokens / min", tpm), h("label", {}, "Budget USD", budget),
    h("label", {}, "Period", period), h("button", { class: "primary", type: "submit" }, "Create key")), problem);
  return form;
}

function showKey(where, key) {
  const copy = h("button", { type: "button", onclick: () => navigator.clipboard.writeText(key.key).then(() => toast("Key copied.")) }, "Copy");
  fill(where, h("div", { class: "panel", role: "region", "aria-label": "New key" },
    h("p", {}, h("strong", {}, `Key for project ${key.project}`), " — copy it now: it is shown this once and never again."),
    h("div", { class: "secret" }, h("code", { class: "new-key" }, key.key), copy)));
  copy.focus();
}

function projectTable(projects, spent) {
  if (!projects.length) return h("div", { class: "empty" }, "No project yet: create a key above and its project is made with it.");
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Project", "Deployments", "Requests / min", "Tokens / min", "Budget", "Spent this period", "Safety"].map((t) => h("th", {}, t)))),
    h("tbody", {}, projects.map((p) => {
      const spend = spent(p.budget_period, p.name);
      const share = p.budget ? spend / p.budget : null;
      return h("tr", {}, h("td", {}, p.name), h("td", {}, p.deployments ? p.deployments.join(", ") : "all"),
        h("td", { class: "num" }, fmt.int(p.rpm)), h("td", { class: "num" }, fmt.int(p.tpm)),
        h("td", { class: "num" }, p.budget === null ? "none" : `${fmt.usd(p.budget)} / ${p.budget_period}`),
        h("td", { class: "num" }, fmt.usd(spend), share === null ? "" : h("span", { class: `pill ${share >= 1 ? "bad" : share > 0.8 ? "warn" : "good"}` }, ` ${Math.round(share * 100)}%`)),
        h("td", {}, p.safety || "–"));
    }))));
}

function keyTable(view, keyList) {
  if (!keyList.length) return h("div", { class: "empty" }, "No key yet. Create one above; it is shown once.");
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Id", "Project", "Name", "Prefix", "Limits", "Created", "Status", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, keyList.map((k) => h("tr", { dataset: { key: k.id } },
      h("td", { class: "mono" }, k.id), h("td", {}, k.project), h("td", {}, k.name || "–"), h("td", { class: "mono" }, k.prefix),
      h("td", {}, [k.rpm ? `${k.rpm} rpm` : "", k.tpm ? `${k.tpm} tpm` : "", k.budget !== null ? `${fmt.usd(k.budget)}/${k.budget_period}` : ""].filter(Boolean).join(", ") || "–"),
      h("td", {}, fmt.time(k.created_at)),
      h("td", {}, h("span", { class: `pill ${k.status === "active" ? "good" : "bad"}` }, k.status)),
      h("td", {}, k.status === "active" ? h("button", {
        class: "danger", type: "button", "aria-label": `Revoke ${k.id}`,
        onclick: async () => {
          if (!confirm(`Revoke ${k.id} of ${k.project}? It stops working on every gateway at once.`)) return;
          try { await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" }); toast(`${k.id} revoked.`); await load(view); } catch (error) { toast(error.message, true); }
        },
      }, "Revoke") : null))))));
}
