// Evaluations: the runs of `modelgate eval run` with their progress, live while one runs; a run's
// scores per deployment and per tag, and its first results; each dataset's leaderboard.
import { api, fill, fmt, h } from "../app.js";

const REFRESH_MS = 2000;
const RESULTS = 100;
const START = "modelgate eval run DATASET.jsonl --config modelgate.yaml --deployments a,b --scorers exact --name NAME";

export const evals = {
  id: "evals",
  title: "Evaluations",
  project: false,
  render(main, args) {
    const view = h("div", {});
    main.append(view);
    let timer = null;
    let stopped = false;
    let live = false;
    // Reloads itself while a run it shows is running (a load that failed changes nothing); a
    // load still under way when the page goes sets no timer after it.
    const refresh = async () => {
      const running = await (args[0] ? detail(view, args[0]) : list(view));
      if (running !== null) live = running;
      if (live && !stopped) timer = setTimeout(refresh, REFRESH_MS);
    };
    refresh();
    return () => { stopped = true; clearTimeout(timer); };
  },
};

const num = (n, digits = 3) => (n === null || n === undefined ? "–" : n.toFixed(digits));
const percent = (n) => (n === null || n === undefined ? "–" : `${(n * 100).toFixed(1)}%`);
const fileName = (path) => path.split(/[\\/]/).pop() || path;
const scorerNames = (run) => run.scorers.map((s) => s.split(":")[0]);

function status(s) {
  return h("span", { class: `pill ${s === "done" ? "good" : s === "running" ? "warn" : "bad"}` }, s);
}

function progress(run) {
  // An online experiment's run (experiment:DEPLOYMENT) has no dataset to finish: its answers only.
  if (!run.expected) return h("span", { class: "num" }, `${fmt.int(run.answers)} answers`);
  return h("span", { class: "row" },
    h("progress", { max: Math.max(run.expected, 1), value: run.answers, "aria-label": `${run.name}: ${run.answers} of ${run.expected} answers` }),
    h("span", { class: "num" }, `${fmt.int(run.answers)} / ${fmt.int(run.expected)}`));
}

// -- the list -------------------------------------------------------------------------------------

async function list(view) {
  let runs, datasets, boards;
  try {
    [runs, datasets] = await Promise.all([api("/admin/evals"), api("/admin/evals/leaderboards")]);
    boards = await Promise.all(datasets.data.map((d) => api(`/admin/evals/leaderboards/${d.dataset_sha256}`)));
  } catch (error) {
    fill(view, h("h1", {}, "Evaluations"), h("p", { class: "error" }, error.message));
    return null;
  }
  if (!runs.data.length) {
    fill(view, h("h1", {}, "Evaluations"), h("div", { class: "empty" },
      "No evaluation yet. Run a dataset over your deployments with ", h("code", {}, START),
      " and it shows here, its progress live as it goes."));
    return false;
  }
  fill(view, h("h1", {}, "Evaluations"),
    h("p", { class: "muted" }, "Runs of ", h("code", {}, "modelgate eval run"), ", newest first; select one for its scores and answers."),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Run", "Status", "Progress", "Dataset", "Deployments", "Scorers", "Started", "Last answer"].map((t) => h("th", {}, t)))),
      h("tbody", {}, runs.data.map(runRow)))),
    h("h2", {}, "Leaderboards"),
    h("p", { class: "muted" }, "Per dataset, each deployment as the most recent finished run that asked it scored it."),
    boards.map(leaderboard));
  return runs.data.some((r) => r.status === "running");
}

function runRow(r) {
  const open = () => { location.hash = `#/evals/${encodeURIComponent(r.name)}`; };
  return h("tr", { class: "clickable", tabindex: 0, dataset: { run: r.name }, onclick: open,
    onkeydown: (event) => { if (event.key === "Enter") open(); } },
  h("td", {}, h("a", { href: `#/evals/${encodeURIComponent(r.name)}` }, r.name)), h("td", { class: "status" }, status(r.status)),
  h("td", {}, progress(r)), h("td", { title: r.dataset }, fileName(r.dataset)), h("td", {}, r.deployments.join(", ")),
  h("td", {}, r.scorers.join(", ")), h("td", {}, fmt.time(r.created_at)), h("td", {}, fmt.time(r.updated_at)));
}

function leaderboard(board) {
  return h("section", { class: "panel", "aria-label": `Leaderboard of ${board.dataset}`, dataset: { dataset: board.dataset_sha256 } },
    h("div", { class: "row" }, h("h2", { class: "grow" }, board.dataset),
      h("span", { class: "muted" }, `sha256 ${board.dataset_sha256.slice(0, 12)} · ${board.finished_runs} of ${board.runs} runs finished`)),
    board.data.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["#", "Deployment", "Quality", "Pass rate", "Cost per 1k items", "Latency p50", "Run"]
        .map((t, i) => h("th", { class: i >= 2 && i <= 5 ? "num" : null }, t)))),
      h("tbody", {}, board.data.map((e) => h("tr", { dataset: { deployment: e.deployment } },
        h("td", {}, String(e.rank)), h("td", {}, e.deployment), h("td", { class: "num" }, num(e.quality)),
        h("td", { class: "num" }, percent(e.pass_rate)), h("td", { class: "num" }, fmt.usd(e.cost_per_1k_items)),
        h("td", { class: "num" }, fmt.ms(e.latency_p50_ms)),
        h("td", {}, h("a", { href: `#/evals/${encodeURIComponent(e.run.name)}` }, e.run.name)))))))
      : h("p", { class: "muted" }, "No run of this dataset has finished yet."));
}

// -- one run --------------------------------------------------------------------------------------

async function detail(view, name) {
  const path = `/admin/evals/${encodeURIComponent(name)}`;
  let run, results;
  try {
    [run, results] = await Promise.all([api(path), api(`${path}/results?limit=${RESULTS}`)]);
  } catch (error) {
    fill(view, h("p", {}, h("a", { href: "#/evals" }, "← All evaluations")), h("h1", {}, name), h("p", { class: "error" }, error.message));
    return error.status === 404 ? false : null;
  }
  const names = scorerNames(run);
  const facts = [["Status", h("span", { class: "row" }, status(run.status), progress(run))],
    ["Dataset", `${run.dataset} (${fmt.int(run.items)} items, sha256 ${run.dataset_sha256.slice(0, 12)})`],
    ["Deployments", run.deployments.join(", ")], ["Scorers", run.scorers.join(", ")], ["Repeats", String(run.repeats)],
    ["Project", run.project], ["Started", fmt.time(run.created_at)], ["Last answer", fmt.time(run.updated_at)]];
  const tags = Object.entries(run.tags);
  fill(view, h("p", {}, h("a", { href: "#/evals" }, "← All evaluations")), h("h1", {}, run.name),
    h("dl", { class: "facts panel" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", {}, "Per deployment"),
    h("p", { class: "muted" }, "Best quality first. Quality is the mean of the scorers' means; each mean with its 95 % interval."),
    run.deployments_summary.length ? summaryTable(run.deployments_summary, names, "summary")
      : h("div", { class: "empty" }, "No answer yet."),
    tags.length ? [h("h2", {}, "Per tag"), tags.map(([tag, rows]) => h("section", { "aria-label": `Tag ${tag}` },
      h("h3", {}, `Tag ${tag}`), summaryTable(rows, names, "tag")))] : null,
    h("h2", {}, "Results"),
    h("p", { class: "muted" }, results.total > RESULTS ? `The first ${RESULTS} of ${fmt.int(results.total)} answers.` : `${fmt.int(results.total)} answers.`),
    results.data.length ? resultTable(results.data, names, run.repeats > 1) : h("div", { class: "empty" }, "No answer yet."));
  return run.status === "running";
}

function summaryTable(rows, names, kind) {
  return h("div", { class: "table-wrap" }, h("table", { class: kind },
    h("thead", {}, h("tr", {}, ["Deployment", "Quality", ...names, "Pass rate", "Errors", "Latency p50", "Latency p95", "Cost per 1k items"]
      .map((t, i) => h("th", { class: i ? "num" : null }, t)))),
    h("tbody", {}, rows.map((s) => h("tr", { dataset: { deployment: s.deployment } },
      h("td", {}, s.deployment), h("td", { class: "num quality" }, num(s.quality)),
      names.map((n) => h("td", { class: "num", dataset: { scorer: n } }, interval(s.scores[n]))),
      h("td", { class: "num pass-rate" }, percent(s.pass_rate.mean)), h("td", { class: "num" }, fmt.int(s.errors)),
      h("td", { class: "num" }, fmt.ms(s.latency_ms.p50)), h("td", { class: "num" }, fmt.ms(s.latency_ms.p95)),
      h("td", { class: "num cost" }, fmt.usd(s.cost_per_1k_items)))))));
}

function interval(m) {
  if (!m || m.mean === null) return "–";
  return [num(m.mean), " ", h("span", { class: "muted" }, `[${num(m.low)}, ${num(m.high)}]`)];
}

function resultTable(rows, names, repeats) {
  return h("div", { class: "table-wrap" }, h("table", { class: "results" },
    h("thead", {}, h("tr", {}, ["Item", repeats ? "Repeat" : null, "Deployment", "Output", "Scores", "Latency"].filter(Boolean)
      .map((t) => h("th", { class: ["Item", "Repeat", "Latency"].includes(t) ? "num" : null }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", { class: "num" }, String(r.item)), repeats ? h("td", { class: "num" }, String(r.repeat)) : null, h("td", {}, r.deployment),
      h("td", {}, r.error ? h("span", { class: "error" }, r.error) : h("div", { class: "output" }, r.output)),
      h("td", {}, names.filter((n) => r.scores[n]).map((n) => [score(n, r.scores[n]), " "])),
      h("td", { class: "num" }, fmt.ms(r.latency_ms)))))));
}

function score(name, s) {
  const verdict = s.passed === true ? "good" : s.passed === false ? "bad" : "";
  return h("span", { class: `pill ${verdict}`, title: s.detail || null }, `${name} ${num(s.score, 2)}`);
}
