// The workbench page: toolbar, live check of the graph, runs over the WebSocket, generation.
// window.studio exposes the editor, the curves and the state for scripted (browser) tests.
import { Curves } from "./charts.js";
import { CompareView } from "./compare.js";
import { DataPanel } from "./datasets.js";
import { wireEditorBar } from "./editbar.js";
import { Editor } from "./graph.js";
import { SweepView } from "./sweeps.js";

const $ = (id) => document.getElementById(id);
const CHECK_EVERY_MS = 300;
const LOG_LINES = 300;

const state = {
  check: null, // last /api/check answer
  shown: null, // id of the run whose curves are drawn
  runs: new Map(), // id -> run (runs.py RunInfo + checkpoint/resumable)
  checkedText: null, // the spec text the last check was for
  checking: false,
  generatedFor: null, // id of the run the generated text came from
};

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const res = await fetch(path, init);
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const err = new Error((data && data.error) || `${method} ${path}: HTTP ${res.status}`);
    err.errors = (data && data.errors) || [];
    err.status = res.status;
    throw err;
  }
  return data;
}

function toast(message, kind = "error") {
  const el = $("toast");
  el.textContent = message;
  el.className = kind === "info" ? "info" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), kind === "info" ? 3000 : 8000);
}

function download(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function fileStem() {
  return ($("spec-name").value.trim() || "untitled").replace(/[^A-Za-z0-9._ -]+/g, "_");
}

// A script's name is typed on a command line: lower case and dashes, no spaces or brackets
// ("small GPT (128 wide)" -> "small-gpt-128-wide.py").
function scriptName() {
  const slug = fileStem().toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  return `${slug || "untitled"}.py`;
}

// ---- specs --------------------------------------------------------------------------------
function currentSpec() {
  return editor.toSpec($("spec-name").value.trim() || "untitled");
}

async function loadSpec(spec) {
  $("spec-name").value = spec.name || "untitled";
  const problems = await editor.load(spec);
  state.checkedText = null; // re-check now
  markSaved();
  if (problems.length) toast(problems.join("\n"));
}

// New, Load, Upload and the examples replace the graph: unsaved edits are asked about first
async function replaceSpec(spec) {
  const edited = JSON.stringify(currentSpec()) !== state.savedText;
  if (edited && editor.graph._nodes.length) {
    const name = $("spec-name").value.trim() || "untitled";
    if (!confirm(`Replace "${name}"? Its unsaved edits will be lost.`)) return;
  }
  await loadSpec(spec);
}

function markSaved() {
  state.savedText = JSON.stringify(currentSpec());
}

async function refreshSaved() {
  const names = await api("GET", "/api/specs");
  const sel = $("saved");
  sel.replaceChildren(new Option("Load…", ""), ...names.map((n) => new Option(n, n)));
}

// ---- the live check ---------------------------------------------------------------------------
async function checkLoop() {
  const spec = currentSpec();
  const text = JSON.stringify({ ...spec, nodes: spec.nodes.map(({ ui, ...n }) => n) });
  if (text !== state.checkedText && !state.checking) {
    state.checking = true;
    try {
      const result = await api("POST", "/api/check", spec);
      state.check = result;
      state.checkedText = text;
      showCheck(result);
    } catch (e) {
      toast(`check failed: ${e.message}`);
    } finally {
      state.checking = false;
    }
  }
  setTimeout(checkLoop, CHECK_EVERY_MS);
}

function showCheck(result) {
  editor.showCheck(result);
  const badge = $("check-status");
  const n = result.errors.length;
  badge.textContent = result.ok ? "spec OK" : `${n} problem${n > 1 ? "s" : ""}`;
  badge.className = `badge ${result.ok ? "ok" : "bad"}`;
  const list = $("errors");
  list.replaceChildren(
    ...result.errors.map((err) => {
      const li = document.createElement("li");
      li.textContent = err.message;
      if (err.node != null) li.addEventListener("click", () => editor.focusError(err));
      else li.className = "global";
      return li;
    }),
  );
  updateButtons();
}

// ---- runs -------------------------------------------------------------------------------------
function activeRun() {
  for (const r of state.runs.values()) {
    if (["starting", "running", "stopping"].includes(r.state)) return r;
  }
  return null;
}

function updateButtons() {
  const active = activeRun();
  const shown = state.shown && state.runs.get(state.shown);
  $("train").disabled = !!active || !(state.check && state.check.ok);
  $("stop").disabled = !active || active.state === "stopping";
  $("resume").disabled = !!active || !(shown && shown.resumable);
  $("generate").disabled = !(shown && shown.checkpoint);
  $("export-gguf").disabled = !(shown && shown.checkpoint && !active);
  $("export-hf").disabled = $("export-gguf").disabled;
}

function showStatus() {
  if (state.generatedFor && state.generatedFor !== state.shown) {
    $("generated").textContent = ""; // text of another run than the one shown
    state.generatedFor = null;
  }
  const r = state.shown && state.runs.get(state.shown);
  if (!r) {
    $("run-status").textContent = "no run yet";
    $("progress").value = 0;
    return;
  }
  const pct = r.max_steps ? ` (${Math.round((100 * r.step) / r.max_steps)}%)` : "";
  const rate = state.rate ? `, ${Math.round(state.rate).toLocaleString()} tokens/s` : "";
  const msg = r.message ? ` — ${r.message}` : "";
  $("run-status").textContent = `${r.name}: ${r.state}, step ${r.step}/${r.max_steps}${pct}${rate}${msg}`;
  $("progress").value = r.max_steps ? r.step / r.max_steps : 0;
}

function putRun(run) {
  state.runs.set(run.id, run);
  const sel = $("runs");
  let opt = [...sel.options].find((o) => o.value === run.id);
  if (!opt) {
    opt = new Option("", run.id);
    sel.add(opt, 0);
  }
  opt.text = `${run.id} ${run.name} (${run.state})`;
  if (state.shown === run.id) sel.value = run.id;
}

async function showRun(id) {
  state.shown = id;
  state.rate = null;
  $("runs").value = id;
  curves.clear();
  const run = await api("GET", `/api/runs/${encodeURIComponent(id)}`);
  putRun(run);
  for (const e of run.metrics) curves.add(e, false);
  curves.update();
  showStatus();
  updateButtons();
}

function onEvent(e) {
  if (e.type === "hello") {
    for (const r of e.runs) putRun(r);
    if (e.active) {
      state.shown = e.active.id;
      curves.clear();
      for (const m of e.active.metrics) curves.add(m, false);
      curves.update();
    } else if (!state.shown && e.runs.length) {
      showRun(e.runs[e.runs.length - 1].id);
    }
  } else if (e.type === "run") {
    putRun(e.run);
    if (["starting"].includes(e.run.state) && state.shown !== e.run.id) {
      state.shown = e.run.id;
      curves.clear();
    }
    if (e.run.state === "failed" && e.run.id === state.shown) toast(`run failed: ${e.run.message}`);
  } else if (e.type === "metrics") {
    const r = state.runs.get(e.run);
    if (r) Object.assign(r, { step: e.step, max_steps: e.max_steps });
    if (e.run === state.shown) {
      curves.add(e);
      if (e.tokens_per_s) state.rate = state.rate ? 0.8 * state.rate + 0.2 * e.tokens_per_s : e.tokens_per_s;
    }
  } else if (e.type === "deleted") {
    state.runs.delete(e.run);
    [...$("runs").options].find((o) => o.value === e.run)?.remove();
    if (state.shown === e.run) {
      state.shown = null;
      curves.clear();
    }
  } else if (e.type === "sweep") {
    sweeps.show(e.sweep);
  } else if (e.type === "log") {
    const log = $("log");
    const lines = (log.textContent ? log.textContent.split("\n") : []).concat(e.line);
    log.textContent = lines.slice(-LOG_LINES).join("\n");
    log.scrollTop = log.scrollHeight;
  }
  if (["run", "deleted", "hello"].includes(e.type)) compare.runsChanged();
  if (["run", "metrics", "deleted"].includes(e.type)) sweeps.runsChanged();
  if (e.type === "metrics") compare.metricsArrived(e.run);
  showStatus();
  updateButtons();
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onopen = () => (state.connected = true);
  ws.onclose = () => {
    state.connected = false;
    setTimeout(connect, 1000);
  };
}

// ---- toolbar ----------------------------------------------------------------------------------
function bind(id, fn) {
  $(id).addEventListener("click", async () => {
    try {
      await fn();
    } catch (e) {
      toast(e.message);
    }
  });
}

function wireToolbar() {
  bind("new", () => replaceSpec({ version: 1, name: "untitled", nodes: [], links: [] }));
  $("saved").addEventListener("change", async (ev) => {
    const name = ev.target.value;
    ev.target.value = "";
    if (name) await replaceSpec(await api("GET", `/api/specs/${encodeURIComponent(name)}`));
  });
  bind("save", async () => {
    const spec = currentSpec();
    await api("PUT", `/api/specs/${encodeURIComponent(fileStem())}`, spec);
    await refreshSaved();
    state.savedText = JSON.stringify(spec);
    toast(`saved ${fileStem()}`, "info");
  });
  bind("upload", () => $("upload-file").click());
  $("upload-file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (!file) return;
    try {
      await replaceSpec(JSON.parse(await file.text()));
    } catch (e) {
      toast(`${file.name} is not a spec: ${e.message}`);
    }
  });
  bind("download", () => {
    download(`${fileStem()}.json`, JSON.stringify(currentSpec(), null, 1), "application/json");
    markSaved();
  });
  bind("train", async () => {
    const run = await api("POST", "/api/runs", currentSpec());
    state.shown = run.id;
    curves.clear();
    putRun(run);
    showStatus();
    updateButtons();
  });
  bind("stop", async () => putRun(await api("POST", `/api/runs/${activeRun().id}/stop`)));
  bind("resume", async () => putRun(await api("POST", `/api/runs/${state.shown}/resume`)));
  bind("export-script", async () => {
    const script = state.shown
      ? await api("GET", `/api/runs/${state.shown}/script`)
      : await api("POST", "/api/script", currentSpec());
    download(scriptName(), script, "text/x-python");
  });
  for (const fmt of ["gguf", "hf"]) {
    bind(`export-${fmt}`, async () => {
      const out = await api("POST", `/api/runs/${state.shown}/export`, { format: fmt });
      const a = document.createElement("a");
      a.href = `/api/runs/${state.shown}/files/${out.download}`;
      a.download = "";
      a.click();
      toast(`exported ${fmt.toUpperCase()} into the run's ${out.path}; downloading ${out.download}`, "info");
    });
  }
  $("runs").addEventListener("change", (ev) => showRun(ev.target.value));
  bind("compare-open", () => compare.open(state.shown && !compare.selected.size ? [state.shown] : null));
  bind("sweep-open", () => sweeps.open());
  bind("generate", async () => {
    const topK = $("top-k").value.trim();
    $("generate").disabled = true;
    $("generated").textContent = "generating…";
    try {
      const out = await api("POST", `/api/runs/${state.shown}/generate`, {
        prompt: $("prompt").value,
        temperature: Number($("temperature").value),
        top_k: topK ? Number(topK) : null,
        max_new_tokens: Number($("max-tokens").value),
      });
      $("generated").textContent = out.text;
      state.generatedFor = state.shown;
    } catch (e) {
      $("generated").textContent = "";
      throw e;
    } finally {
      updateButtons();
    }
  });
}

function buildPalette(types, examples) {
  const list = $("node-list");
  const byCategory = {};
  for (const [name, t] of Object.entries(types)) (byCategory[t.category] ||= []).push(name);
  for (const [category, names] of Object.entries(byCategory)) {
    const head = document.createElement("div");
    head.className = "category";
    head.textContent = category;
    list.append(head);
    for (const name of names) {
      const b = document.createElement("button");
      b.textContent = name;
      b.title = types[name].doc;
      b.dataset.type = name;
      b.addEventListener("click", () => editor.addNode(name));
      list.append(b);
    }
  }
  for (const ex of examples) {
    const b = document.createElement("button");
    b.textContent = ex.title;
    b.dataset.example = ex.name;
    b.addEventListener("click", async () => {
      try {
        await replaceSpec(await api("GET", `/api/examples/${encodeURIComponent(ex.name)}`));
      } catch (e) {
        toast(e.message);
      }
    });
    $("examples").append(b);
  }
}

// ---- start ------------------------------------------------------------------------------------
let editor;
let curves;
let compare;
let sweeps;

async function main() {
  const [nodeTypes, examples] = await Promise.all([
    api("GET", "/api/node-types"),
    api("GET", "/api/examples"),
  ]);
  editor = new Editor($("graph-canvas"), nodeTypes.types, (groups) =>
    api("POST", "/api/groups", { groups }),
  );
  curves = new Curves($("loss-chart"), $("rate-chart"));
  compare = new CompareView({ api, toast, runs: () => state.runs });
  sweeps = new SweepView({
    api,
    toast,
    nodeTypes: nodeTypes.types,
    currentSpec,
    runs: () => state.runs,
    openCompare: (ids) => compare.open(ids),
    onChange: (s) => {
      const active = ["running", "stopping"].includes(s.state);
      $("sweep-open").textContent = active ? `Sweep ${s.done}/${s.items.length}` : "Sweep";
    },
  });
  buildPalette(nodeTypes.types, examples);
  const data = new DataPanel({ api, toast, editor, recheck: () => (state.checkedText = null) });
  await data.refresh();
  wireToolbar();
  markSaved();
  await Promise.all([refreshSaved(), sweeps.load(), wireEditorBar(editor, { api, toast })]);
  window.studio = { editor, curves, state, loadSpec, currentSpec, compare, sweeps, ready: true };
  connect();
  checkLoop();
}

main().catch((e) => toast(`the studio failed to start: ${e.message}`));
