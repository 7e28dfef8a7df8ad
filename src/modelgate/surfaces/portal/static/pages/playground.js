// Playground: one deployment, or two to four side by side, streamed as the tokens arrive, each with
// its time to first token, latency, tokens and cost; and the exact request as curl and SDK code.
import { api, fill, fmt, h, portal, readEvents, toast } from "../app.js";

const MAX_COMPARED = 4;

export const playground = {
  id: "playground",
  title: "Playground",
  project: true,
  render(main, args) {
    const controllers = new Set();
    const view = h("div", {}, h("h1", {}, "Playground"), h("p", { class: "muted" }, "Loading deployments…"));
    main.append(view);
    portal("catalog").then((catalog) => build(view, catalog, args[0], controllers))
      .catch((error) => fill(view, h("h1", {}, "Playground"), h("p", { class: "error" }, error.message)));
    return () => controllers.forEach((c) => c.abort());
  },
};

function build(view, catalog, preset, controllers) {
  const chat = catalog.deployments.filter((d) => d.mode !== "embedding");
  if (!chat.length) {
    fill(view, h("h1", {}, "Playground"), h("div", { class: "empty" },
      "No chat deployment is open to this key. ",
      catalog.role === "master" ? h("a", { href: "#/catalog" }, "Deploy a model from the catalog") : "Ask an admin for access",
      "."));
    return;
  }
  const byName = Object.fromEntries(chat.map((d) => [d.name, d]));
  const chosen = new Set([preset && byName[preset] ? preset : chat[0].name]);
  const picks = h("fieldset", { class: "row", "aria-label": "Deployments" },
    h("legend", { class: "muted" }, `Deployments (one to chat, two to ${MAX_COMPARED} to compare)`),
    chat.map((d) => {
      const box = h("input", { type: "checkbox", name: "deployment", value: d.name, checked: chosen.has(d.name) });
      box.addEventListener("change", () => {
        if (box.checked && chosen.size >= MAX_COMPARED) { box.checked = false; toast(`Compare at most ${MAX_COMPARED}.`); return; }
        if (box.checked) chosen.add(d.name); else chosen.delete(d.name);
        code.refresh();
      });
      return h("label", { class: "check" }, box, d.name);
    }));
  const system = h("textarea", { name: "system", rows: 2, placeholder: "System prompt (optional)", "aria-label": "System prompt" });
  const prompt = h("textarea", { name: "prompt", rows: 4, placeholder: "Ask something… (Ctrl+Enter sends)", "aria-label": "Message" });
  const temperature = h("input", { type: "number", name: "temperature", min: 0, max: 2, step: 0.1, placeholder: "default", "aria-label": "Temperature" });
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: 1, step: 1, placeholder: "default", "aria-label": "Max tokens" });
  const topP = h("input", { type: "number", name: "top_p", min: 0, max: 1, step: 0.05, placeholder: "default", "aria-label": "Top p" });
  const image = h("input", { type: "url", name: "image", placeholder: "https://… or data: URL (optional)", "aria-label": "Image URL" });
  const tools = h("textarea", { name: "tools", rows: 2, placeholder: '[{"type": "function", "function": {"name": "...", "parameters": {...}}}] (optional)', "aria-label": "Tools (JSON)" });
  const send = h("button", { class: "primary", type: "submit" }, "Send");
  const panels = h("div", { class: "compare", "aria-live": "polite" });
  const code = codeView(() => request([...chosen][0] || chat[0].name));

  function request(model) {
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    const text = prompt.value || "Hello!";
    messages.push({ role: "user", content: image.value.trim()
      ? [{ type: "text", text }, { type: "image_url", image_url: { url: image.value.trim() } }] : text });
    const body = { model, messages, stream: true, stream_options: { include_usage: true } };
    if (temperature.value !== "") body.temperature = Number(temperature.value);
    if (maxTokens.value !== "") body.max_tokens = Number(maxTokens.value);
    if (topP.value !== "") body.top_p = Number(topP.value);
    if (tools.value.trim()) body.tools = JSON.parse(tools.value);
    return body;
  }

  async function run(event) {
    event.preventDefault();
    if (!chosen.size) { toast("Pick a deployment."); return; }
    let bodies;
    try { bodies = [...chosen].map((name) => request(name)); } catch (error) {
      toast(`Tools must be a JSON array: ${error.message}`, true); return;
    }
    send.disabled = true;
    fill(panels);
    try {
      await Promise.all(bodies.map((body) => stream(body, byName[body.model], panels, controllers)));
    } finally {
      send.disabled = false;
    }
  }

  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  for (const input of [system, prompt, temperature, maxTokens, topP, image, tools]) input.addEventListener("input", () => code.refresh());
  const form = h("form", { onsubmit: run, class: "panel" }, picks, h("label", {}, "System", system),
    h("label", {}, "Message", prompt),
    h("div", { class: "row" }, h("label", {}, "Temperature", temperature), h("label", {}, "Max tokens", maxTokens),
      h("label", {}, "Top p", topP), h("label", { class: "grow" }, "Image", image)),
    h("details", {}, h("summary", {}, "Tools"), h("label", {}, "Tool definitions (JSON)", tools)),
    h("div", { class: "row" }, send));
  fill(view, h("h1", {}, "Playground"), form, panels, code.el);
  code.refresh();
  prompt.focus();
}

async function stream(body, deployment, panels, controllers) {
  const reasoning = h("div", { class: "reasoning", hidden: true });
  const output = h("div", { class: "output" });
  const stats = h("div", { class: "stats" }, "waiting…");
  const panel = h("section", { class: "panel", "aria-label": body.model, dataset: { deployment: body.model } },
    h("h2", {}, body.model), reasoning, output, stats);
  panels.append(panel);
  const controller = new AbortController();
  controllers.add(controller);
  const started = performance.now();
  let first = null;
  let usage = null;
  let finish = null;
  try {
    const response = await api("/v1/chat/completions", { method: "POST", body, raw: true, signal: controller.signal });
    if (!response.ok) {
      const failed = await response.json().catch(() => ({}));
      throw new Error((failed.error && failed.error.message) || `status ${response.status}`);
    }
    const answeredBy = response.headers.get("x-modelgate-model");
    const provider = response.headers.get("x-modelgate-provider");
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (delta.reasoning_content) { reasoning.hidden = false; reasoning.append(delta.reasoning_content); }
        if (delta.content) {
          if (first === null) first = performance.now() - started;
          output.append(delta.content);
        }
        for (const call of delta.tool_calls || []) {
          if (first === null) first = performance.now() - started;
          output.append(call.function && call.function.name ? `\n→ ${call.function.name}(` : "", (call.function && call.function.arguments) || "");
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      fill(stats, `first token ${fmt.ms(first)}`, " · streaming…");
    });
    const total = performance.now() - started;
    const cost = usage ? price(usage, deployment, provider) : null;
    fill(stats, h("span", {}, `first token ${fmt.ms(first)}`), h("span", {}, `total ${fmt.ms(total)}`),
      h("span", {}, usage ? `${usage.prompt_tokens} in · ${usage.completion_tokens} out tokens` : "no usage reported"),
      h("span", {}, `cost ${cost === null ? "–" : fmt.usd(cost)}`), h("span", {}, `finish: ${finish || "–"}`),
      answeredBy ? h("span", {}, `model ${answeredBy}`) : null);
    panel.dataset.done = "true";
  } catch (error) {
    if (error.name === "AbortError") return;
    fill(stats, h("span", { class: "error" }, error.message));
    panel.dataset.done = "error";
  } finally {
    controllers.delete(controller);
  }
}

function price(usage, deployment, provider) {
  const p = deployment && ((deployment.prices || {})[provider] || deployment.price);
  if (!p || p.input === null || p.output === null) return null;
  return (usage.prompt_tokens * p.input + usage.completion_tokens * p.output) / 1e6;
}

function codeView(current) {
  const tabs = ["curl", "openai", "anthropic"];
  let shown = "curl";
  const pre = h("pre", { tabindex: 0 });
  const buttons = tabs.map((tab) => h("button", { type: "button", role: "tab", onclick: () => { shown = tab; refresh(); } }, tab));
  const copy = h("button", { type: "button", onclick: () => navigator.clipboard.writeText(pre.textContent).then(() => toast("Copied.")) }, "Copy");
  const el = h("section", {}, h("h2", {}, "This request as code"), h("div", { class: "tabs", role: "tablist" }, buttons, copy), pre);
  function refresh() {
    let body;
    try { body = current(); } catch { fill(pre, "(the tools are not valid JSON yet)"); return; }
    buttons.forEach((b) => b.setAttribute("aria-selected", String(b.textContent === shown)));
    fill(pre, snippet(shown, body));
  }
  return { el, refresh };
}

function snippet(kind, body) {
  const base = `${location.origin}`;
  if (kind === "curl") {
    return `curl ${base}/v1/chat/completions \\\n  -H "Authorization: Bearer $MODELGATE_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${JSON.stringify(body, null, 2).replaceAll("'", "'\\''")}'`;
  }
  if (kind === "openai") {
    const { model, messages, stream, stream_options, ...rest } = body;
    const extra = Object.entries(rest).map(([k, v]) => `    ${k}=${JSON.stringify(v)},\n`).join("");
    return `import os\n\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", api_key=os.environ["MODELGATE_KEY"])\nstream = client.chat.completions.create(\n    model=${JSON.stringify(model)},\n    messages=${JSON.stringify(messages)},\n${extra}    stream=True,\n)\nfor chunk in stream:\n    print(chunk.choices[0].delta.content or "", end="") if chunk.choices else None\n`;
  }
  const system = body.messages.filter((m) => m.role === "system").map((m) => m.content).join("\n");
  const messages = body.messages.filter((m) => m.role !== "system").map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content
    : m.content.map((part) => (part.type === "text" ? { type: "text", text: part.text } : { type: "image", source: { type: "url", url: part.image_url.url } })) }));
  return `import os\n\nimport anthropic\n\nclient = anthropic.Anthropic(base_url="${base}", api_key=os.environ["MODELGATE_KEY"])\nwith client.messages.stream(\n    model=${JSON.stringify(body.model)},\n    max_tokens=${body.max_tokens || 1024},\n${system ? `    system=${JSON.stringify(system)},\n` : ""}    messages=${JSON.stringify(messages)},\n) as stream:\n    for text in stream.text_stream:\n        print(text, end="")\n`;
}
