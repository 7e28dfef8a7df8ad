// The portal's shell: the session, the calls to the gateway, the page router and the DOM helpers
// every page uses. Nothing here or in a page ever writes HTML from data: text goes in as text.
import { pages } from "./pages/index.js";

const state = { session: null, cleanup: null };

// -- DOM ------------------------------------------------------------------------------------------

/** An element: h("button", {class: "primary", onclick: f}, "Save"). Strings become text nodes. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** ``el`` emptied and filled with ``children``. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, bad = false) {
  const note = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(note);
  setTimeout(() => note.remove(), bad ? 9000 : 4000);
}

// -- formatting -----------------------------------------------------------------------------------

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US")),
  usd: (n) => (n === null || n === undefined ? "–" : "$" + (n < 0.01 && n > 0 ? n.toPrecision(2) : n.toFixed(n < 100 ? 4 : 2))),
  ms: (n) => (n === null || n === undefined ? "–" : n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(2)} s`),
  time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
  price: (n) => (n === null || n === undefined ? "–" : `$${n}`),
};

// -- the gateway ----------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The gateway answered ${status}.`);
    this.status = status;
    this.code = error.code;
    this.param = error.param;
  }
}

/** Calls the gateway's ``path`` (/admin/..., /v1/...) with the session's key; JSON in and out. */
export async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.session) headers["x-csrf-token"] = state.session.csrf;
  const response = await fetch(`/ui/api/gw${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal,
    credentials: "same-origin",
  });
  if (raw) return response;
  return decoded(response);
}

async function decoded(response) {
  let body = null;
  const text = await response.text();
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: { message: text.slice(0, 300) } }; }
  if (response.status === 401 && body && body.error && body.error.code === "not_signed_in") signedOut();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function portal(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.session) headers["x-csrf-token"] = state.session.csrf;
  const response = await fetch(`/ui/api/${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin",
  });
  return decoded(response);
}

/** Reads an SSE response, calling ``onEvent(data)`` with each event's parsed JSON. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data || data === "[DONE]") continue;
      try { onEvent(JSON.parse(data)); } catch { /* not JSON: not an event of ours */ }
    }
  }
}

// -- session --------------------------------------------------------------------------------------

export function session() {
  return state.session;
}

function signedOut() {
  state.session = null;
  render();
}

async function signIn(key) {
  state.session = await portal("session", { method: "POST", body: { key } });
  if (!location.hash || location.hash === "#/signin") location.hash = state.session.role === "master" ? "#/overview" : "#/playground";
  render();
}

async function signOut() {
  try { await portal("session", { method: "DELETE" }); } finally { signedOut(); }
}

function signInPage(main) {
  const input = h("input", { type: "password", name: "key", autocomplete: "current-password", required: true,
    placeholder: "mg-... or the master key", "aria-label": "Key" });
  const problem = h("p", { class: "error", role: "alert" });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      fill(problem);
      try { await signIn(input.value); } catch (error) { fill(problem, error.message); input.focus(); }
    },
  },
  h("label", {}, "Master key or project key", input), problem,
  h("button", { class: "primary", type: "submit" }, "Sign in"),
  h("p", { class: "muted" }, "The master key sees and manages everything; a project key sees its own deployments ",
    "and the playground. The key stays in a cookie that scripts cannot read, for 12 hours."));
  fill(main, h("div", { class: "signin panel" }, h("h1", {}, "Sign in to modelgate"), form));
  input.focus();
}

// -- pages ----------------------------------------------------------------------------------------

function allowed() {
  return pages.filter((page) => state.session && (state.session.role === "master" || page.project));
}

function render() {
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (state.cleanup) { state.cleanup(); state.cleanup = null; }
  if (!state.session) {
    fill(nav);
    fill(who);
    signInPage(main);
    return;
  }
  const visible = allowed();
  const route = location.hash.replace(/^#\/?/, "").split("?")[0];
  const id = route.split("/")[0] || visible[0].id;
  const page = visible.find((p) => p.id === id);
  fill(nav, visible.map((p) => h("a", { href: `#/${p.id}`, "aria-current": p === page ? "page" : null }, p.title)));
  const s = state.session;
  fill(who, h("span", {}, s.role === "master" ? "master key" : `project ${s.project}`),
    h("button", { onclick: signOut }, "Sign out"));
  if (!page) {
    fill(main, h("h1", {}, "Not here"), h("div", { class: "empty" }, `There is no page “${id}” for this key. `,
      h("a", { href: `#/${visible[0].id}` }, `Go to ${visible[0].title}`), "."));
    return;
  }
  document.title = `${page.title} · modelgate`;
  fill(main);
  const args = route.split("/").slice(1).map(decodeURIComponent);
  try {
    state.cleanup = page.render(main, args) || null;
  } catch (error) {
    fill(main, h("p", { class: "error" }, `This page failed: ${error.message}`));
  }
}

window.addEventListener("hashchange", () => { render(); document.getElementById("main").focus({ preventScroll: true }); });

async function start() {
  try {
    const found = await portal("session");
    state.session = found.signed_in ? found : null;
  } catch (error) {
    state.session = null;
    toast(`The gateway did not answer: ${error.message}`, true);
  }
  render();
}

start();
