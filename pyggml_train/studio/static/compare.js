// The comparison view: tick runs (of this spec or others), overlay their train and validation
// curves against step, tokens or wall time, and read a table of their numbers and of the spec
// fields in which they differ (both computed by GET /api/compare). Runs are renamed (click
// the pencil, type, Enter) and deleted (the bin, then confirm) here.
import { CompareChart, RUN_COLORS } from "./charts.js";

const TEMPLATE = `
  <header>
    <h2>Compare runs</h2>
    <label>x axis <select class="cmp-x">
      <option value="step">step</option>
      <option value="tokens">tokens</option>
      <option value="elapsed_s">wall time</option>
    </select></label>
    <span class="hint">solid: train loss; dashed with dots: validation loss</span>
    <span class="grow"></span>
    <button class="close" title="back to the editor (Esc)">Close</button>
  </header>
  <div class="view-body">
    <ul class="cmp-runs" title="tick the runs to compare"></ul>
    <div class="cmp-main">
      <div class="chart big"><canvas></canvas></div>
      <p class="cmp-empty hint">Tick two or more runs on the left.</p>
      <div class="table-wrap"><table class="cmp-table"></table></div>
    </div>
  </div>`;

const fixed = (v, digits = 4) => (v === null || v === undefined ? "—" : v.toFixed(digits));
const plain = (v) => (v === null || v === undefined ? "—" : String(v));

export class CompareView {
  // runs(): the page's Map of run id -> run (kept current by the WebSocket)
  constructor({ api, toast, runs }) {
    Object.assign(this, { api, toast, runs });
    this.selected = new Set();
    this.rows = [];
    this.differences = [];
    this.asked = 0; // the latest comparison asked for; older answers are dropped
    this.redraw = null; // a pending refresh for metrics that arrived
    this.dialog = document.createElement("dialog");
    this.dialog.id = "compare-view";
    this.dialog.className = "view";
    this.dialog.innerHTML = TEMPLATE;
    document.body.append(this.dialog);
    this.chart = new CompareChart(this.q(".chart canvas"));
    this.q(".close").addEventListener("click", () => this.dialog.close());
    this.q(".cmp-x").addEventListener("change", () => this.draw());
  }

  q(selector) {
    return this.dialog.querySelector(selector);
  }

  get x() {
    return this.q(".cmp-x").value;
  }

  // open on these runs (or on the last selection)
  async open(ids) {
    if (ids) this.selected = new Set(ids);
    if (!this.dialog.open) this.dialog.showModal();
    this.renderList();
    await this.refresh();
  }

  // a run was added, renamed, changed state or deleted
  runsChanged() {
    if (!this.dialog.open) return;
    for (const id of this.selected) if (!this.runs().has(id)) this.selected.delete(id);
    if (!this.q(".cmp-runs input[type=text]")) this.renderList(); // not while renaming
    this.refresh().catch((e) => this.toast(e.message));
  }

  // a metrics event: a ticked run's curves are redrawn, at most once a second
  metricsArrived(runId) {
    if (!this.dialog.open || !this.selected.has(runId) || this.redraw) return;
    this.redraw = setTimeout(() => {
      this.redraw = null;
      this.refresh().catch((e) => this.toast(e.message));
    }, 1000);
  }

  renderList() {
    const runs = [...this.runs().values()].sort((a, b) => b.created - a.created);
    this.q(".cmp-runs").replaceChildren(...runs.map((run) => this.listItem(run)));
  }

  listItem(run) {
    const li = document.createElement("li");
    li.dataset.run = run.id;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = this.selected.has(run.id);
    box.addEventListener("change", () => {
      if (box.checked) this.selected.add(run.id);
      else this.selected.delete(run.id);
      this.refresh().catch((e) => this.toast(e.message));
    });
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = run.name;
    name.title = `${run.id}: ${run.state}, step ${run.step}/${run.max_steps}`;
    const state = document.createElement("small");
    state.textContent = run.state;
    const rename = this.button("✎", "rename", () => this.startRename(run, li, name));
    const remove = this.button("✕", "delete", () => this.remove(run));
    const label = document.createElement("label");
    label.append(box, name);
    li.append(label, state, rename, remove);
    return li;
  }

  button(text, action, fn) {
    const b = document.createElement("button");
    b.textContent = text;
    b.className = `icon ${action}`;
    b.title = `${action} this run`;
    b.addEventListener("click", async () => {
      try {
        await fn();
      } catch (e) {
        this.toast(e.message);
      }
    });
    return b;
  }

  startRename(run, li, nameSpan) {
    const input = document.createElement("input");
    input.type = "text";
    input.value = run.name;
    input.maxLength = 100;
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      try {
        if (save && input.value.trim() !== run.name) {
          const renamed = await this.api("PATCH", `/api/runs/${run.id}`, { name: input.value });
          Object.assign(run, renamed);
        }
      } catch (e) {
        this.toast(e.message);
      }
      this.renderList();
      await this.refresh();
    };
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") finish(true);
      if (ev.key === "Escape") {
        ev.preventDefault(); // Esc cancels the rename, not the dialog
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    nameSpan.replaceWith(input);
    input.focus();
    input.select();
  }

  async remove(run) {
    const what = `Delete run "${run.name}" (${run.id})? Its metrics, checkpoint and exports are removed.`;
    if (!window.confirm(what)) return;
    await this.api("DELETE", `/api/runs/${run.id}`);
    this.selected.delete(run.id);
    this.runs().delete(run.id); // the "deleted" event says it to the rest of the page
    this.renderList();
    await this.refresh();
  }

  async refresh() {
    const created = (id) => (this.runs().get(id) || {}).created || 0;
    const ids = [...this.selected].sort((a, b) => created(a) - created(b));
    const asked = ++this.asked;
    const body = ids.length
      ? await this.api("GET", `/api/compare?runs=${ids.map(encodeURIComponent).join(",")}`)
      : { runs: [], differences: [] };
    if (asked !== this.asked) return;
    this.rows = body.runs;
    this.differences = body.differences;
    this.draw();
    this.renderTable();
  }

  // a run's name in the legend, with the values that set it apart when names repeat
  label(row, k) {
    const names = this.rows.map((r) => r.name);
    if (names.indexOf(row.name) === names.lastIndexOf(row.name)) return row.name;
    const fields = this.differences.filter((d) => d.field !== "links");
    const parts = fields.map((d) => `${d.field.split(".").pop()}=${plain(d.values[k])}`);
    return `${row.name} (${parts.length ? parts.join(", ") : row.id})`;
  }

  draw() {
    this.chart.show(this.rows.map((row, k) => ({ ...row, label: this.label(row, k) })), this.x);
    this.q(".cmp-empty").hidden = this.rows.length > 0;
  }

  renderTable() {
    const head = ["", "run", "state", "steps", "final val", "best val (step)", "final train",
      "tokens/s", "parameters", ...this.differences.map((d) => d.field)];
    const tr = (cells, tag) => {
      const row = document.createElement("tr");
      for (const c of cells) {
        const cell = document.createElement(tag);
        if (c instanceof Node) cell.append(c);
        else cell.textContent = c;
        row.append(cell);
      }
      return row;
    };
    const rows = this.rows.map((r, k) => {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = RUN_COLORS[k % RUN_COLORS.length];
      const best = r.best_val_loss === null ? "—" : `${fixed(r.best_val_loss)} (${r.best_val_step})`;
      const row = tr([swatch, r.name, r.state, String(r.steps), fixed(r.final_val_loss), best,
        fixed(r.final_train_loss), r.tokens_per_s === null ? "—" : Math.round(r.tokens_per_s).toLocaleString("en-US"),
        r.parameters === null ? "—" : r.parameters.toLocaleString("en-US"),
        ...this.differences.map((d) => plain(d.values[k]))], "td");
      row.dataset.run = r.id;
      return row;
    });
    this.q(".cmp-table").replaceChildren(tr(head, "th"), ...rows);
  }
}
