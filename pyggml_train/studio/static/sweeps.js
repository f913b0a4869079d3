// The sweep view: choose one or two node parameters of the spec on the canvas and their
// values (lr x batch_size, say); the server queues every combination (POST /api/sweeps) and
// trains them one at a time. The view shows each run's progress and a results table with the
// best run (lowest validation loss) marked, and opens the comparison on the runs when the
// sweep finishes. The sweep lives on the server, so a reloaded page shows it again.

const TEMPLATE = `
  <header>
    <h2>Sweep</h2>
    <span class="grow"></span>
    <button class="close" title="back to the editor (Esc); the sweep goes on">Close</button>
  </header>
  <div class="view-body column">
    <section class="sweep-form">
      <p class="hint">Trains the spec on the canvas once for every combination of the values,
        one run at a time. Values: numbers, words or true/false, separated by commas.</p>
      <div class="axis" data-axis="0">
        <label>node <select class="node"></select></label>
        <label>parameter <select class="param"></select></label>
        <label>values <input class="values" type="text" placeholder="0.001, 0.003" spellcheck="false"></label>
      </div>
      <div class="axis" data-axis="1">
        <label>and node <select class="node"></select></label>
        <label>parameter <select class="param"></select></label>
        <label>values <input class="values" type="text" placeholder="64, 128" spellcheck="false"></label>
      </div>
      <div class="row-line">
        <button class="start primary">Start sweep</button>
        <span class="count hint"></span>
      </div>
    </section>
    <section class="sweep-status" hidden>
      <h3 class="title"></h3>
      <div class="state"></div>
      <progress class="progress" max="1" value="0"></progress>
      <div class="row-line">
        <button class="stop">Stop sweep</button>
        <button class="compare">Compare these runs</button>
      </div>
      <div class="table-wrap"><table class="sweep-table"></table></div>
    </section>
  </div>`;

const ACTIVE = ["running", "stopping"];
const fixed = (v) => (v === null || v === undefined ? "—" : v.toFixed(4));

// "0.001, 3e-3 true adamw" -> [0.001, 0.003, true, "adamw"]
function parseValues(text) {
  return text
    .split(/[,\s]+/)
    .filter(Boolean)
    .map((t) => {
      if (t === "true" || t === "false") return t === "true";
      const n = Number(t);
      return Number.isFinite(n) ? n : t;
    });
}

export class SweepView {
  // nodeTypes: the palette's declaration; currentSpec(): the spec on the canvas;
  // runs(): the page's Map of runs; openCompare(ids): the comparison view on those runs
  constructor({ api, toast, nodeTypes, currentSpec, runs, openCompare, onChange }) {
    Object.assign(this, { api, toast, nodeTypes, currentSpec, runs, openCompare, onChange });
    this.sweep = null; // the sweep shown: the latest one
    this.frame = null; // a render waiting for the next animation frame
    this.dialog = document.createElement("dialog");
    this.dialog.id = "sweep-view";
    this.dialog.className = "view";
    this.dialog.innerHTML = TEMPLATE;
    document.body.append(this.dialog);
    this.q(".close").addEventListener("click", () => this.dialog.close());
    for (const axis of this.axes()) {
      axis.querySelector(".node").addEventListener("change", () => this.fillParams(axis));
      axis.querySelector(".values").addEventListener("input", () => this.count());
    }
    this.guard(".start", () => this.start());
    this.guard(".stop", () => this.stop());
    this.guard(".compare", () => this.compare());
  }

  q(selector) {
    return this.dialog.querySelector(selector);
  }

  axes() {
    return [...this.dialog.querySelectorAll(".axis")];
  }

  guard(selector, fn) {
    this.q(selector).addEventListener("click", async () => {
      try {
        await fn();
      } catch (e) {
        this.toast(e.message);
      }
    });
  }

  // the latest sweep, from the server (at page load: a sweep survives a reload)
  async load() {
    const sweeps = await this.api("GET", "/api/sweeps");
    if (sweeps.length) this.show(sweeps[sweeps.length - 1]);
  }

  open() {
    this.fillNodes();
    if (!this.dialog.open) this.dialog.showModal();
    this.render();
  }

  fillNodes() {
    const nodes = this.currentSpec().nodes;
    this.axes().forEach((axis, k) => {
      const sel = axis.querySelector(".node");
      const before = sel.value;
      const options = nodes.map((n) => new Option(`${n.title || n.id} (${n.type})`, n.id));
      sel.replaceChildren(...(k ? [new Option("(none)", "")] : []), ...options);
      const fallback = k === 0 ? (nodes.find((n) => n.type === "Loss") || {}).id : "";
      sel.value = nodes.some((n) => n.id === before) ? before : fallback || sel.options[0]?.value || "";
      this.fillParams(axis);
    });
  }

  fillParams(axis) {
    const node = this.currentSpec().nodes.find((n) => n.id === axis.querySelector(".node").value);
    const sel = axis.querySelector(".param");
    const before = sel.value;
    const params = node ? this.nodeTypes[node.type].params : [];
    sel.replaceChildren(...params.map((p) => new Option(p.name, p.name)));
    sel.disabled = !node;
    axis.querySelector(".values").disabled = !node;
    if (params.some((p) => p.name === before)) sel.value = before;
    else if (params.some((p) => p.name === "lr")) sel.value = "lr";
    this.count();
  }

  chosenAxes() {
    return this.axes()
      .filter((axis) => axis.querySelector(".node").value)
      .map((axis) => ({
        node: axis.querySelector(".node").value,
        param: axis.querySelector(".param").value,
        values: parseValues(axis.querySelector(".values").value),
      }));
  }

  count() {
    const n = this.chosenAxes().reduce((k, a) => k * a.values.length, 1);
    this.q(".count").textContent = n ? `${n} run${n > 1 ? "s" : ""}` : "";
  }

  async start() {
    const sweep = await this.api("POST", "/api/sweeps", { spec: this.currentSpec(), axes: this.chosenAxes() });
    this.show(sweep);
  }

  async stop() {
    this.show(await this.api("POST", `/api/sweeps/${this.sweep.id}/stop`));
  }

  compare() {
    const ids = this.sweep.items.map((i) => i.run).filter((id) => id && this.runs().has(id));
    this.dialog.close();
    return this.openCompare(ids);
  }

  // a sweep from the server (an answer or a "sweep" event); the latest one is shown
  show(sweep) {
    const shown = this.sweep;
    if (shown && sweep.id !== shown.id && sweep.created < shown.created) return;
    const ended = shown && shown.id === sweep.id && ACTIVE.includes(shown.state) && sweep.state === "finished";
    this.sweep = sweep;
    this.render();
    if (this.onChange) this.onChange(sweep);
    if (ended) this.compare().catch((e) => this.toast(e.message)); // the sweep's results, side by side
  }

  // run events (hundreds a second from a tiny model): the current run's progress, drawn at
  // most once a frame
  runsChanged() {
    if (!this.dialog.open || !this.sweep || this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.render();
    });
  }

  // combinations done (and the current run's fraction) of all
  progress() {
    const s = this.sweep;
    const current = s.items.find((i) => i.state === "running");
    const run = current && this.runs().get(current.run);
    const part = run && run.max_steps ? run.step / run.max_steps : 0;
    return (s.done + part) / s.items.length;
  }

  render() {
    const s = this.sweep;
    this.q(".sweep-status").hidden = !s;
    this.q(".start").disabled = !!(s && ACTIVE.includes(s.state));
    if (!s) return;
    this.q(".title").textContent = s.name;
    const msg = s.message ? ` — ${s.message}` : "";
    this.q(".state").textContent = `${s.state}: ${s.done} of ${s.items.length} runs done${msg}`;
    this.q(".progress").value = this.progress();
    this.q(".stop").disabled = s.state !== "running";
    this.q(".compare").disabled = !s.items.some((i) => i.run);
    const fields = s.axes.map((a) => `${a.node}.${a.param}`);
    const head = ["#", ...fields, "run", "state", "step", "final val", "best val", "best"];
    const table = [this.tr(head, "th")];
    s.items.forEach((item, k) => {
      const run = item.run && this.runs().get(item.run);
      const step = run ? `${run.step}/${run.max_steps}` : item.state === "pending" ? "" : `${item.steps}`;
      const best = item.run !== null && item.run === s.best;
      const row = this.tr([String(k + 1), ...fields.map((f) => String(item.values[f])),
        run ? run.name : item.run || "", run && item.state === "running" ? run.state : item.state, step,
        fixed(item.final_val_loss), fixed(item.best_val_loss), best ? "★" : ""], "td");
      row.dataset.run = item.run || "";
      if (best) row.className = "best";
      table.push(row);
    });
    this.q(".sweep-table").replaceChildren(...table);
  }

  tr(cells, tag) {
    const row = document.createElement("tr");
    for (const c of cells) {
      const cell = document.createElement(tag);
      cell.textContent = c;
      row.append(cell);
    }
    return row;
  }
}
