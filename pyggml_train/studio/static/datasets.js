// The palette's Data section: the server's named datasets (GET /api/datasets), each with
// whether its files are at hand; a click on one makes it the TextDataset's source, Fetch
// downloads it into the server's cache (checked against its recorded SHA-256), and
// "Upload text…" puts a text file from this computer into the data directory and points
// the TextDataset at it; the texts already in the data directory are listed to pick. The
// server owns every rule; errors are its messages.

const $ = (id) => document.getElementById(id);
const DATA_TYPE = "TextDataset";

export class DataPanel {
  constructor({ api, toast, editor, recheck }) {
    Object.assign(this, { api, toast, editor, recheck });
    $("upload-text").addEventListener("click", () => $("upload-text-file").click());
    $("upload-text-file").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = "";
      if (file) await this.guard(() => this.upload(file));
    });
  }

  async guard(fn) {
    try {
      await fn();
    } catch (e) {
      this.toast(e.message);
    }
  }

  async refresh() {
    const [list, files] = await Promise.all([
      this.api("GET", "/api/datasets"),
      this.api("GET", "/api/data"),
    ]);
    $("datasets").replaceChildren(...list.map((d) => this.row(d)));
    // the data directory's own texts (a dataset's files there are listed above)
    const published = new Set(list.flatMap((d) => d.files.map((f) => f.name)));
    const texts = files.filter((f) => !published.has(f.name));
    $("data-files").replaceChildren(...texts.map((f) => this.fileButton(f)));
  }

  fileButton(f) {
    const b = document.createElement("button");
    b.textContent = f.name;
    b.dataset.file = f.name;
    b.title = `DATA_DIR/data/${f.name}, ${f.bytes.toLocaleString()} bytes: train on it`;
    b.addEventListener("click", () => this.use("file", f.name));
    return b;
  }

  row(d) {
    const row = document.createElement("div");
    row.className = "dataset";
    const use = document.createElement("button");
    use.textContent = d.name;
    use.dataset.dataset = d.name;
    const files = d.files.map((f) => `${f.name}: ${f.path || f.url}`).join("\n");
    use.title = `${d.title}; validates on ${d.validation}\n${files}`;
    use.addEventListener("click", () => this.use(d.name, ""));
    if (d.at_hand || d.error) {
      const status = document.createElement("span");
      status.className = `status ${d.at_hand ? "ok" : "bad"}`;
      status.dataset.status = d.name;
      status.textContent = d.at_hand ? "at hand" : "damaged";
      status.title = d.error || files;
      row.append(use, status);
    } else {
      const fetch = document.createElement("button");
      fetch.textContent = "Fetch";
      fetch.dataset.fetch = d.name;
      fetch.title = `not here: download ${d.files.map((f) => f.url).join(", ")} into ${d.cache}`;
      fetch.addEventListener("click", () => this.guard(() => this.fetch(d.name, fetch)));
      row.append(use, fetch);
    }
    return row;
  }

  // the selected TextDataset, else the graph's first, else a new one
  dataNode() {
    const isData = (n) => n.type.split("/")[1] === DATA_TYPE;
    const selected = Object.values(this.editor.canvas.selected_nodes || {}).find(isData);
    return selected || this.editor.graph._nodes.find(isData) || this.editor.addNode(DATA_TYPE);
  }

  use(source, path) {
    const node = this.dataNode();
    for (const [name, value] of [["source", source], ["path", path]]) {
      node.widgetsByName[name].value = value;
      node.properties[name] = value;
    }
    this.editor.canvas.setDirty(true, true);
  }

  async fetch(name, button) {
    button.disabled = true;
    button.textContent = "Fetching…";
    try {
      await this.api("POST", `/api/datasets/${encodeURIComponent(name)}/fetch`);
      this.toast(`${name} is at hand`, "info");
    } finally {
      await this.refresh();
      this.recheck();
    }
  }

  async upload(file) {
    const name = file.name.replace(/[^A-Za-z0-9._ -]+/g, "_").replace(/^[^A-Za-z0-9]+/, "");
    await this.api("PUT", `/api/data/${encodeURIComponent(name)}`, await file.text());
    this.use("file", name);
    await this.refresh();
    this.toast(`uploaded ${name} into the data directory`, "info");
  }
}
