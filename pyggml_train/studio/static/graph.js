// The node editor: LiteGraph node classes built from the server's node types, and the
// conversion between the LiteGraph graph and the spec JSON (docs/spec.md). The server owns
// every rule; this file only draws what /api/check says (shapes on outputs, errors on nodes).
/* global LiteGraph, LGraph, LGraphCanvas */

const ERROR_COLOR = "#e5484d";
const MIN_READABLE_SCALE = 0.62; // LiteGraph drops node text below a zoom of 0.6
const KIND_COLORS = { tokens: "#c9a227", targets: "#b0689f", tensor: "#4f9cf5" };

export class Editor {
  constructor(canvasEl, types) {
    this.types = types; // node_types_json()["types"]
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(canvasEl, this.graph);
    this.canvas.render_canvas_border = false;
    this.canvas.show_info = false;
    this.counter = 0;
    Object.assign(LGraphCanvas.link_type_colors, KIND_COLORS);
    LiteGraph.clearRegisteredTypes();
    for (const [name, t] of Object.entries(types)) this.register(name, t);
    this.resize();
    window.addEventListener("resize", () => this.resize());
  }

  resize() {
    const el = this.canvas.canvas;
    const box = el.parentElement.getBoundingClientRect();
    this.canvas.resize(Math.floor(box.width), Math.floor(box.height));
  }

  register(name, t) {
    const editor = this;
    function SpecNode() {
      for (const p of t.inputs) this.addInput(p.name, p.kind);
      for (const p of t.outputs) this.addOutput(p.name, p.kind);
      this.properties = this.properties || {};
      this.specErrors = [];
      this.widgetsByName = {};
      for (const p of t.params) this.widgetsByName[p.name] = addParamWidget(this, p, editor);
      this.size = this.computeSize();
      this.size[0] = Math.max(this.size[0], 230);
    }
    SpecNode.title = name;
    SpecNode.desc = t.doc;
    SpecNode.prototype.onDrawForeground = function (ctx) {
      if (!this.specErrors.length || this.flags.collapsed) return;
      ctx.save();
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillStyle = ERROR_COLOR;
      let y = this.size[1] + 16;
      for (const msg of this.specErrors) {
        for (const line of wrap(ctx, msg, Math.max(this.size[0], 260))) {
          ctx.fillText(line, 0, y);
          y += 15;
        }
      }
      ctx.restore();
    };
    SpecNode.prototype.onAdded = function () {
      if (!this.specId) this.specId = editor.freshId(name);
    };
    LiteGraph.registerNodeType(`${t.category}/${name}`, SpecNode);
  }

  typeKey(name) {
    return `${this.types[name].category}/${name}`;
  }

  freshId(type) {
    const taken = new Set(this.graph._nodes.map((n) => n.specId));
    let id;
    do id = `${type.toLowerCase()}${++this.counter}`;
    while (taken.has(id));
    return id;
  }

  nodeBySpecId(id) {
    return this.graph._nodes.find((n) => n.specId === id);
  }

  addNode(type) {
    const node = LiteGraph.createNode(this.typeKey(type));
    const [cx, cy] = this.canvas.convertOffsetToCanvas([
      this.canvas.canvas.width / 2 - 120,
      this.canvas.canvas.height / 2 - 60,
    ]);
    node.pos = [cx, cy];
    this.graph.add(node);
    return node;
  }

  // ---- graph -> spec ----------------------------------------------------------------------
  toSpec(name) {
    const byId = new Map(this.graph._nodes.map((n) => [n.id, n]));
    const nodes = this.graph._nodes.map((n) => {
      const params = {};
      for (const p of this.types[n.type.split("/")[1]].params) {
        params[p.name] = paramValue(p, n.widgetsByName[p.name].value);
      }
      const out = { id: n.specId, type: n.type.split("/")[1], params };
      if (n.title && n.title !== n.specId) out.title = n.title;
      out.ui = { pos: [Math.round(n.pos[0]), Math.round(n.pos[1])] };
      return out;
    });
    const links = Object.values(this.graph.links)
      .filter((l) => l && byId.has(l.origin_id) && byId.has(l.target_id))
      .sort((a, b) => a.id - b.id)
      .map((l) => ({
        from: [byId.get(l.origin_id).specId, l.origin_slot],
        to: [byId.get(l.target_id).specId, l.target_slot],
      }));
    return { version: 1, name, nodes, links };
  }

  // ---- spec -> graph ----------------------------------------------------------------------
  // Unknown types and bad links are skipped and returned as messages; the server's check
  // then reports what the loaded graph still lacks.
  load(spec) {
    const problems = [];
    this.graph.clear();
    const nodes = Array.isArray(spec.nodes) ? spec.nodes : [];
    const made = new Map();
    nodes.forEach((raw, i) => {
      if (!raw || !this.types[raw.type]) {
        problems.push(`node ${raw && raw.id}: unknown type ${raw && raw.type}; skipped`);
        return;
      }
      const node = LiteGraph.createNode(this.typeKey(raw.type));
      node.specId = String(raw.id);
      node.title = raw.title || node.specId;
      const pos = raw.ui && Array.isArray(raw.ui.pos) ? raw.ui.pos : [40 + 280 * i, 40];
      node.pos = [Number(pos[0]) || 0, Number(pos[1]) || 0];
      for (const [k, v] of Object.entries(raw.params || {})) {
        if (node.widgetsByName[k]) node.widgetsByName[k].value = v;
        else problems.push(`${node.title}: unknown parameter ${k}; dropped`);
      }
      this.graph.add(node);
      made.set(node.specId, node);
    });
    for (const link of Array.isArray(spec.links) ? spec.links : []) {
      const a = link && link.from && made.get(link.from[0]);
      const b = link && link.to && made.get(link.to[0]);
      if (!a || !b || !a.connect(link.from[1], b, link.to[1])) {
        problems.push(`link ${JSON.stringify(link)} could not be made; skipped`);
      }
    }
    if (this.bounds()[2] - this.bounds()[0] > this.canvas.canvas.width / MIN_READABLE_SCALE) {
      this.wrapRows();
    }
    this.fit();
    return problems;
  }

  // [x0, y0, x1, y1] around every node, titles and error lines included
  bounds() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of this.graph._nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1] + 40);
    }
    return [x0, y0, x1, y1];
  }

  // a layout too wide to read on this screen (one long row) is folded into rows, in order
  wrapRows() {
    const gap = 50;
    const width = this.canvas.canvas.width / MIN_READABLE_SCALE - 2 * gap;
    const nodes = [...this.graph._nodes].sort((a, b) => a.pos[0] - b.pos[0] || a.pos[1] - b.pos[1]);
    let x = 0, y = 0, rowHeight = 0;
    for (const n of nodes) {
      if (x > 0 && x + n.size[0] > width) {
        x = 0;
        y += rowHeight + LiteGraph.NODE_TITLE_HEIGHT + 2 * gap;
        rowHeight = 0;
      }
      n.pos = [x, y];
      x += n.size[0] + gap;
      rowHeight = Math.max(rowHeight, n.size[1]);
    }
  }

  fit() {
    if (!this.graph._nodes.length) return;
    const [x0, y0, x1, y1] = this.bounds();
    const pad = 30;
    const el = this.canvas.canvas;
    const scale = Math.min(1, el.width / (x1 - x0 + 2 * pad), el.height / (y1 - y0 + 2 * pad));
    this.canvas.ds.scale = Math.max(0.25, scale);
    this.canvas.ds.offset = [pad / scale - x0, pad / scale - y0];
    this.canvas.setDirty(true, true);
  }

  // ---- what the server inferred -----------------------------------------------------------
  showCheck(result) {
    for (const n of this.graph._nodes) {
      const t = this.types[n.type.split("/")[1]];
      n.specErrors = [];
      n.boxcolor = null;
      n.color = undefined;
      (n.outputs || []).forEach((slot, i) => {
        const shape = result.shapes[`${n.specId}:${i}`];
        slot.label = shape ? `${t.outputs[i].name} [${shape.join(", ")}]` : null;
      });
    }
    for (const err of result.errors) {
      const node = err.node != null && this.nodeBySpecId(err.node);
      if (!node) continue;
      node.specErrors.push(err.message);
      node.boxcolor = ERROR_COLOR;
      node.color = "#6b2a2d";
    }
    this.canvas.setDirty(true, true);
  }

  focus(specId) {
    const node = this.nodeBySpecId(specId);
    if (!node) return;
    this.canvas.centerOnNode(node);
    this.canvas.selectNode(node);
  }
}

function addParamWidget(node, p, editor) {
  const set = (v) => (node.properties[p.name] = v);
  node.properties[p.name] = p.default;
  if (p.type === "bool") return node.addWidget("toggle", p.name, p.default, set);
  if (p.type === "choice") {
    return node.addWidget("combo", p.name, p.default, set, { values: p.choices });
  }
  if (p.type === "int" || p.type === "float") {
    const opts = { min: p.min, max: p.max };
    if (p.type === "int") Object.assign(opts, { step: 10, precision: 0 });
    else Object.assign(opts, { step: 0.1 * stepOf(p.default), precision: precisionOf(p.default) });
    return node.addWidget("number", p.name, p.default, set, opts);
  }
  return node.addWidget("text", p.name, p.default, set);
}

function paramValue(p, value) {
  if (p.type === "int") return Math.round(Number(value));
  if (p.type === "float") return Number(value);
  return value;
}

// a float widget steps by a tenth of its default's magnitude and shows two significant digits
function stepOf(x) {
  return x ? 10 ** Math.floor(Math.log10(Math.abs(x))) * 10 : 1;
}

function precisionOf(x) {
  return x ? Math.max(2, 1 - Math.floor(Math.log10(Math.abs(x)))) : 2;
}

function wrap(ctx, text, width) {
  const lines = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (ctx.measureText(next).width > width && line) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}
