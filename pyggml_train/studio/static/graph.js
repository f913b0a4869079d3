// The node editor: LiteGraph node classes built from the server's node types and group
// interfaces, and the conversion between the LiteGraph graph and the spec JSON (docs/spec.md).
// The server owns every rule; this file only draws what /api/check says (shapes on outputs,
// errors on nodes). Groups (docs/workbench.md): a group node stands for a block of nodes; the
// canvas shows one level at a time, the spec's top level or the inside of an open group.
/* global LiteGraph, LGraph, LGraphCanvas */
import { arrange, freeSpot, overlaps } from "./layout.js";

const ERROR_COLOR = "#e5484d";
const GROUP_COLOR = "#2d4a3e";
const KIND_COLORS = { tokens: "#c9a227", targets: "#b0689f", tensor: "#4f9cf5" };
// node text is drawn at TEXT_SIZE canvas pixels; at READABLE_SCALE and above it is at least
// 12 px on screen, so a graph too wide for the canvas opens at that zoom (scroll to see it all)
const TEXT_SIZE = 17;
export const READABLE_SCALE = 0.75;
const NODE_WIDTH = 300;
const ERROR_LINE = 21; // canvas pixels per line of error text under a node
// the two nodes inside an open group that stand for its ports
const BOUNDARY = { in: "boundary/group inputs", out: "boundary/group outputs" };

export class Editor {
  // types: node_types_json()["types"]; describeGroups(groups) -> {interfaces, errors}
  constructor(canvasEl, types, describeGroups) {
    Object.assign(LiteGraph, {
      NODE_TEXT_SIZE: TEXT_SIZE,
      NODE_SUBTEXT_SIZE: TEXT_SIZE,
      NODE_TITLE_HEIGHT: 34,
      NODE_SLOT_HEIGHT: 24,
      NODE_WIDGET_HEIGHT: 26,
    });
    this.types = types;
    this.describeGroups = describeGroups;
    this.groups = {}; // the spec's group definitions, by name
    this.interfaces = {}; // name -> {inputs, outputs, params} of each valid definition
    this.stack = []; // open groups, outermost first: {name, instance}
    this.top = null; // the top level's nodes and links while a group is open
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(canvasEl, this.graph);
    this.canvas.render_canvas_border = false;
    this.canvas.show_info = false;
    this.counter = 0;
    Object.assign(LGraphCanvas.link_type_colors, KIND_COLORS);
    LiteGraph.clearRegisteredTypes();
    for (const [name, t] of Object.entries(types)) this.register(`${t.category}/${name}`, name, t);
    this.registerBoundaries();
    this.resize();
    window.addEventListener("resize", () => this.resize());
  }

  resize() {
    const el = this.canvas.canvas;
    const box = el.parentElement.getBoundingClientRect();
    this.canvas.resize(Math.floor(box.width), Math.floor(box.height));
  }

  // one LiteGraph class per node type, and per group definition (type "Group")
  register(key, specType, t, groupName = null) {
    const editor = this;
    function SpecNode() {
      for (const p of t.inputs) this.addInput(p.name, p.kind);
      for (const p of t.outputs) this.addOutput(p.name, p.kind);
      this.specType = specType;
      this.groupName = groupName;
      this.paramSpecs = t.params;
      this.properties = this.properties || {};
      this.specErrors = [];
      this.widgetsByName = {};
      for (const p of t.params) this.widgetsByName[p.name] = addParamWidget(this, p);
      this.size = this.computeSize();
      this.size[0] = Math.max(this.size[0], NODE_WIDTH);
      if (groupName) this.color = GROUP_COLOR;
    }
    SpecNode.title = groupName ? (editor.groups[groupName] || {}).title || groupName : specType;
    SpecNode.desc = t.doc || `group ${groupName}: double-click to open`;
    SpecNode.prototype.onDrawForeground = function (ctx) {
      if (!this.specErrors.length || this.flags.collapsed) return;
      ctx.save();
      ctx.font = `${TEXT_SIZE}px system-ui, sans-serif`;
      ctx.fillStyle = ERROR_COLOR;
      let y = this.size[1] + TEXT_SIZE + 4;
      for (const line of errorLines(ctx, this)) {
        ctx.fillText(line, 0, y);
        y += ERROR_LINE;
      }
      ctx.restore();
    };
    SpecNode.prototype.onAdded = function () {
      if (!this.specId) this.specId = editor.freshId(groupName || specType);
    };
    if (groupName) {
      SpecNode.prototype.getTitle = function () {
        const n = this.widgetsByName.repeat.value;
        return n > 1 ? `${this.title} × ${n}` : this.title;
      };
      // a double-click on the title opens it (quick clicks on a widget's arrows do not),
      // once LiteGraph is done with the press: it still holds this node while handling it
      SpecNode.prototype.onDblClick = function (e, pos) {
        if (pos[1] < 0) setTimeout(() => editor.enter(this), 0);
      };
    }
    LiteGraph.registerNodeType(key, SpecNode);
  }

  registerBoundaries() {
    for (const [side, key] of Object.entries(BOUNDARY)) {
      function Boundary() {
        this.boundary = side;
        this.color = GROUP_COLOR;
        this.size = [200, 60];
      }
      Boundary.title = key.split("/")[1];
      LiteGraph.registerNodeType(key, Boundary);
    }
  }

  // learn the interface of every definition (ports, parameters) from the server, and
  // (re)register their node classes; returns the definitions' problems
  async refreshGroups() {
    const names = Object.keys(this.groups);
    const answer = names.length
      ? await this.describeGroups(this.groups)
      : { interfaces: {}, errors: [] };
    this.interfaces = answer.interfaces;
    for (const name of names) {
      this.register(`group/${name}`, "Group", this.interfaces[name] || fallback(this.groups[name]), name);
    }
    return answer.errors;
  }

  freshId(type) {
    const taken = new Set(this.graph._nodes.map((n) => n.specId));
    if (this.top) for (const n of this.top.nodes) taken.add(n.id);
    let id;
    do id = `${type.toLowerCase().replace(/[^a-z0-9_-]/g, "")}${++this.counter}`;
    while (taken.has(id));
    return id;
  }

  nodeBySpecId(id) {
    return this.graph._nodes.find((n) => n.specId === id);
  }

  // the level's nodes in spec order (LiteGraph moves a clicked node to the end of its list)
  specNodes() {
    return this.graph._nodes.filter((n) => !n.boundary).sort((a, b) => a.order - b.order);
  }

  // a node from the palette, placed in free space near the middle of the view
  addNode(type, groupName = null) {
    const node = LiteGraph.createNode(groupName ? `group/${groupName}` : this.typeKey(type));
    const el = this.canvas.canvas;
    // (LiteGraph names it backwards: this converts canvas pixels to graph coordinates)
    const want = this.canvas.ds.convertCanvasToOffset([el.width / 2 - 150, el.height / 3]);
    const [x, y] = freeSpot(this.boxes(), want, this.box(node));
    node.pos = [x, y + LiteGraph.NODE_TITLE_HEIGHT];
    node.order = this.graph._nodes.length ? Math.max(...this.graph._nodes.map((n) => n.order || 0)) + 1 : 0;
    this.graph.add(node);
    this.canvas.setDirty(true, true);
    return node;
  }

  // a saved template's groups join the spec's (an equal definition is shared; a different
  // one of the same name is refused), then one node of it is added
  async addTemplate(template) {
    for (const [name, defn] of Object.entries(template.groups)) {
      const have = this.groups[name];
      if (have && JSON.stringify(have) !== JSON.stringify(defn)) {
        throw new Error(
          `this spec already has a different group "${name}"; rename one of them first ` +
            "(open the group, Save block under another name)",
        );
      }
    }
    this.commitOpenGroup();
    Object.assign(this.groups, template.groups);
    await this.refreshGroups();
    return this.addNode("Group", template.name);
  }

  typeKey(name) {
    return `${this.types[name].category}/${name}`;
  }

  // ---- graph -> spec ----------------------------------------------------------------------
  // the nodes and links of the level on the canvas (links to the boundary nodes left out)
  level() {
    const nodes = this.specNodes().map((n) => {
      const params = {};
      for (const p of n.paramSpecs) params[p.name] = paramValue(p, n.widgetsByName[p.name].value);
      const out = { id: n.specId, type: n.specType };
      if (n.groupName) out.group = n.groupName;
      if (n.title && n.title !== n.specId && n.title !== n.constructor.title) out.title = n.title;
      out.params = params;
      out.ui = { pos: [Math.round(n.pos[0]), Math.round(n.pos[1])] };
      return out;
    });
    const links = this.links()
      .filter(([a, , b]) => !a.boundary && !b.boundary)
      .map(([a, i, b, j]) => ({ from: [a.specId, i], to: [b.specId, j] }));
    return { nodes, links };
  }

  // [origin node, output, target node, input] of every link, in the order they were made
  links() {
    const byId = new Map(this.graph._nodes.map((n) => [n.id, n]));
    return Object.values(this.graph.links)
      .filter((l) => l && byId.has(l.origin_id) && byId.has(l.target_id))
      .sort((a, b) => a.id - b.id)
      .map((l) => [byId.get(l.origin_id), l.origin_slot, byId.get(l.target_id), l.target_slot]);
  }

  // the open group's definition as the canvas shows it
  openDefinition() {
    const { name } = this.stack[this.stack.length - 1];
    const old = this.groups[name];
    const { nodes, links } = this.level();
    const inputs = (old.inputs || []).map((inp) => ({ ...inp, to: [] }));
    const outputs = (old.outputs || []).map((out) => ({ ...out, from: null }));
    for (const [a, i, b, j] of this.links()) {
      if (a.boundary === "in" && !b.boundary) inputs[i].to.push([b.specId, j]);
      if (b.boundary === "out" && !a.boundary) outputs[j].from = [a.specId, i];
    }
    const ids = new Set(nodes.map((n) => n.id));
    const params = (old.params || [])
      .map((p) => ({ ...p, binds: p.binds.filter(([id]) => ids.has(id)) }))
      .filter((p) => p.binds.length);
    return { ...old, nodes, links, inputs, outputs, params };
  }

  // write the open group's inside back into its definition
  commitOpenGroup() {
    if (!this.stack.length) return;
    this.groups[this.stack[this.stack.length - 1].name] = this.openDefinition();
  }

  toSpec(name) {
    const groups = { ...this.groups };
    let top = this.level();
    if (this.stack.length) {
      groups[this.stack[this.stack.length - 1].name] = this.openDefinition();
      top = this.top;
    }
    const spec = { version: 1, name, nodes: top.nodes, links: top.links };
    if (Object.keys(groups).length) spec.groups = groups;
    return spec;
  }

  // ---- spec -> graph ----------------------------------------------------------------------
  // Unknown types and bad links are skipped and returned as messages; the server's check
  // then reports what the loaded graph still lacks.
  async load(spec) {
    this.groups = spec.groups && typeof spec.groups === "object" ? { ...spec.groups } : {};
    this.stack = [];
    this.top = null;
    const problems = (await this.refreshGroups()).map((e) => e.message);
    problems.push(...this.show(spec));
    this.view();
    return problems;
  }

  // draw one level's nodes and links (arranged when they have no positions)
  show(levelSpec, boundary = null) {
    const problems = [];
    this.graph.clear();
    const nodes = Array.isArray(levelSpec.nodes) ? levelSpec.nodes : [];
    const made = new Map();
    let placed = true;
    for (const raw of nodes) {
      const key = !raw
        ? null
        : raw.type === "Group"
          ? this.groups[raw.group] && `group/${raw.group}`
          : this.types[raw.type] && this.typeKey(raw.type);
      if (!key) {
        const why = raw && raw.type === "Group" ? `no group ${raw.group} in this spec` : `unknown type ${raw && raw.type}`;
        problems.push(`node ${raw && raw.id}: ${why}; skipped`);
        continue;
      }
      const node = LiteGraph.createNode(key);
      node.order = made.size;
      node.specId = String(raw.id);
      node.title = raw.title || (raw.type === "Group" ? node.constructor.title : node.specId);
      const pos = raw.ui && Array.isArray(raw.ui.pos) ? raw.ui.pos : null;
      placed = placed && !!pos;
      node.pos = pos ? [Number(pos[0]) || 0, Number(pos[1]) || 0] : [0, 0];
      for (const [k, v] of Object.entries(raw.params || {})) {
        if (node.widgetsByName[k]) node.widgetsByName[k].value = v;
        else problems.push(`${node.title}: unknown parameter ${k}; dropped`);
      }
      this.graph.add(node);
      made.set(node.specId, node);
    }
    if (boundary) {
      const ins = LiteGraph.createNode(BOUNDARY.in);
      for (const p of boundary.inputs) ins.addOutput(p.name, p.kind);
      const outs = LiteGraph.createNode(BOUNDARY.out);
      for (const p of boundary.outputs) outs.addInput(p.name, p.kind);
      made.set(BOUNDARY.in, ins);
      made.set(BOUNDARY.out, outs);
      this.graph.add(ins);
      this.graph.add(outs);
      placed = false; // the boundary nodes go to the edges: arrange the inside
    }
    const links = [...(Array.isArray(levelSpec.links) ? levelSpec.links : []), ...(boundary ? boundary.links : [])];
    for (const link of links) {
      const a = link && link.from && made.get(link.from[0]);
      const b = link && link.to && made.get(link.to[0]);
      if (!a || !b || !a.connect(link.from[1], b, link.to[1])) {
        problems.push(`link ${JSON.stringify(link)} could not be made; skipped`);
      }
    }
    // no positions, or positions made for other node sizes: lay the level out afresh
    if (!placed || this.crowded()) this.arrange(false);
    return problems;
  }

  // ---- open and leave groups ----------------------------------------------------------------
  // the path of group node ids from the top level to the level on the canvas
  path() {
    return this.stack.map((f) => f.instance);
  }

  async enter(node) {
    if (!node.groupName || !this.groups[node.groupName]) return;
    if (this.stack.length) this.commitOpenGroup();
    else this.top = this.level();
    this.stack.push({ name: node.groupName, instance: node.specId });
    this.showOpenGroup();
  }

  showOpenGroup() {
    const { name } = this.stack[this.stack.length - 1];
    const defn = this.groups[name];
    const face = this.interfaces[name] || { inputs: [], outputs: [] };
    const inputs = Array.isArray(defn.inputs) ? defn.inputs : [];
    const outputs = Array.isArray(defn.outputs) ? defn.outputs : [];
    const boundary = {
      inputs: inputs.map((p, i) => ({ name: p.name, kind: (face.inputs[i] || {}).kind })),
      outputs: outputs.map((p, i) => ({ name: p.name, kind: (face.outputs[i] || {}).kind })),
      links: [
        ...inputs.flatMap((p, i) => (p.to || []).map((t) => ({ from: [BOUNDARY.in, i], to: t }))),
        ...outputs.flatMap((p, i) => (p.from ? [{ from: p.from, to: [BOUNDARY.out, i] }] : [])),
      ],
    };
    this.show(defn, boundary);
    this.view();
    if (this.onLevel) this.onLevel();
  }

  async leave() {
    if (!this.stack.length) return;
    this.commitOpenGroup();
    this.stack.pop();
    await this.refreshGroups(); // its ports or parameters may have changed
    if (this.stack.length) this.showOpenGroup();
    else {
      this.show(this.top);
      this.top = null;
      this.view();
      if (this.onLevel) this.onLevel();
    }
  }

  // ---- grouping the selection -------------------------------------------------------------
  // what the group dialog offers: the selected nodes' parameters, and why grouping may not work
  selection() {
    const nodes = Object.values(this.canvas.selected_nodes || {}).filter((n) => !n.boundary);
    const refused = nodes.find((n) => n.specType !== "Group" && this.types[n.specType].category !== "layer");
    return { nodes, refused };
  }

  // replace the selected nodes with one node of a new group ``name``; ``exposed`` maps an
  // exposed parameter's name to the [node id, parameter] it sets
  async groupSelection(name, title, exposed) {
    const { nodes: selected, refused } = this.selection();
    if (!selected.length) throw new Error("select the nodes to group first (click, Ctrl+click or Ctrl+drag)");
    if (refused) throw new Error(`${refused.title} is a ${refused.specType}: a group holds layers only`);
    if (this.groups[name]) throw new Error(`the spec already has a group "${name}"; pick another name`);
    if (this.stack.length) throw new Error("leave the open group first: groups are made at the top level");
    const chosen = new Set(selected.map((n) => n.specId));
    const level = this.level();
    const inside = level.nodes.filter((n) => chosen.has(n.id));
    const x0 = Math.min(...inside.map((n) => n.ui.pos[0]));
    const y0 = Math.min(...inside.map((n) => n.ui.pos[1]));
    const inputs = [];
    const outputs = [];
    const outer = [];
    const instance = this.freshId(name);
    const portName = (list, base) => {
      let n = base;
      for (let k = 2; list.some((p) => p.name === n); k++) n = `${base}${k}`;
      return n;
    };
    for (const link of level.links) {
      const fromIn = chosen.has(link.from[0]);
      const toIn = chosen.has(link.to[0]);
      if (fromIn === toIn) {
        if (!fromIn) outer.push(link);
        continue;
      }
      if (toIn) {
        const key = JSON.stringify(link.from);
        let i = inputs.findIndex((p) => p.key === key);
        if (i < 0) {
          const target = this.nodeBySpecId(link.to[0]);
          inputs.push({ key, name: portName(inputs, target.inputs[link.to[1]].name), to: [] });
          i = inputs.length - 1;
          outer.push({ from: link.from, to: [instance, i] });
        }
        inputs[i].to.push(link.to);
      } else {
        const key = JSON.stringify(link.from);
        let i = outputs.findIndex((p) => p.key === key);
        if (i < 0) {
          const source = this.nodeBySpecId(link.from[0]);
          outputs.push({ key, name: portName(outputs, source.outputs[link.from[1]].name), from: link.from });
          i = outputs.length - 1;
        }
        outer.push({ from: [instance, i], to: link.to });
      }
    }
    const params = Object.entries(exposed).map(([pname, binds]) => ({ name: pname, binds }));
    const values = {};
    for (const [pname, [[id, p]]] of Object.entries(exposed)) {
      values[pname] = inside.find((n) => n.id === id).params[p];
    }
    this.groups[name] = {
      title: title || name,
      nodes: inside.map((n) => ({ ...n, ui: { pos: [n.ui.pos[0] - x0, n.ui.pos[1] - y0] } })),
      links: level.links.filter((l) => chosen.has(l.from[0]) && chosen.has(l.to[0])),
      inputs: inputs.map(({ name: n, to }) => ({ name: n, to })),
      outputs: outputs.map(({ name: n, from }) => ({ name: n, from })),
      params,
    };
    const errors = await this.refreshGroups();
    if (!this.interfaces[name]) {
      delete this.groups[name];
      throw new Error(`cannot group these nodes: ${errors.map((e) => e.message).join("; ")}`);
    }
    // the group node takes the place of the first selected node in the spec's order
    const at = level.nodes.findIndex((n) => chosen.has(n.id));
    const node = { id: instance, type: "Group", group: name, params: { repeat: 1, ...values }, ui: { pos: [x0, y0] } };
    const rest = level.nodes.filter((n) => !chosen.has(n.id));
    rest.splice(Math.min(at, rest.length), 0, node);
    const problems = this.show({ nodes: rest, links: outer });
    this.canvas.setDirty(true, true);
    return problems;
  }

  // ---- layout and view ----------------------------------------------------------------------
  box(n) {
    const lines = n.specErrors && n.specErrors.length ? this.errorHeight(n) : 0;
    return [n.size[0], n.size[1] + LiteGraph.NODE_TITLE_HEIGHT + lines];
  }

  errorHeight(n) {
    const ctx = this.canvas.ctx;
    ctx.save();
    ctx.font = `${TEXT_SIZE}px system-ui, sans-serif`;
    const lines = errorLines(ctx, n).length;
    ctx.restore();
    return lines * ERROR_LINE + 8;
  }

  // [x, y, width, height] of every node with its title (and error lines), canvas units
  boxes(except = null) {
    return this.graph._nodes
      .filter((n) => n !== except)
      .map((n) => [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, ...this.box(n)]);
  }

  crowded() {
    const boxes = this.boxes();
    return boxes.some((a, i) => boxes.slice(i + 1).some((b) => overlaps(a, b)));
  }

  // lay the level out left to right along its links (dagre), then show it
  arrange(refit = true) {
    const nodes = this.graph._nodes;
    const ids = new Map(nodes.map((n, i) => [n, String(i)]));
    const at = arrange(
      nodes.map((n) => ({ id: ids.get(n), size: this.box(n) })),
      this.links().map(([a, , b]) => [ids.get(a), ids.get(b)]),
    );
    for (const n of nodes) {
      const [x, y] = at.get(ids.get(n));
      n.pos = [x, y + LiteGraph.NODE_TITLE_HEIGHT];
    }
    if (refit) this.view();
    else this.canvas.setDirty(true, true);
  }

  // the whole level when it fits at a readable zoom; else its left end at that zoom
  view() {
    const el = this.canvas.canvas;
    if (!this.graph._nodes.length) {
      this.canvas.ds.scale = 1;
      this.canvas.ds.offset = [0, 0];
      this.canvas.setDirty(true, true);
      return;
    }
    const boxes = this.boxes();
    const x0 = Math.min(...boxes.map((b) => b[0]));
    const y0 = Math.min(...boxes.map((b) => b[1]));
    const x1 = Math.max(...boxes.map((b) => b[0] + b[2]));
    const y1 = Math.max(...boxes.map((b) => b[1] + b[3]));
    const pad = 30;
    const fit = Math.min(1, el.width / (x1 - x0 + 2 * pad), el.height / (y1 - y0 + 2 * pad));
    const scale = Math.max(READABLE_SCALE, fit);
    this.canvas.ds.scale = scale;
    const spareY = Math.max(0, el.height / scale - (y1 - y0 + 2 * pad)) / 2;
    this.canvas.ds.offset = [pad - x0, pad + spareY - y0];
    this.canvas.setDirty(true, true);
  }

  // ---- what the server inferred -----------------------------------------------------------
  showCheck(result) {
    const path = this.path();
    const prefix = path.length ? `${path.join("/")}/` : "";
    for (const n of this.graph._nodes) {
      n.specErrors = [];
      n.boxcolor = null;
      if (n.boundary) continue;
      n.color = n.groupName ? GROUP_COLOR : undefined;
      (n.outputs || []).forEach((slot, i) => {
        const shape = result.shapes[`${prefix}${n.specId}:${i}`];
        slot.label = shape ? `${slot.name} [${shape.join(", ")}]` : null;
      });
    }
    for (const err of result.errors) {
      const where = err.path || (err.node != null ? [err.node] : []);
      if (where.length <= path.length || path.some((id, i) => where[i] !== id)) continue;
      const node = this.nodeBySpecId(where[path.length]);
      if (!node) continue;
      node.specErrors.push(err.message);
      node.boxcolor = ERROR_COLOR;
      node.color = "#6b2a2d";
    }
    this.canvas.setDirty(true, true);
  }

  // centre the node an error names: on the canvas's level, the node on the error's path
  focusError(err) {
    const where = err.path || [err.node];
    const path = this.path();
    if (path.every((id, i) => where[i] === id)) this.focus(where[path.length]);
  }

  focus(specId) {
    const node = this.nodeBySpecId(specId);
    if (!node) return;
    this.canvas.centerOnNode(node);
    this.canvas.selectNode(node);
  }
}

// the ports and parameters a broken group shows until it is mended (the check says what
// is wrong), so its node and links are kept: its values stay as they are
function fallback(given) {
  const defn = given && typeof given === "object" ? given : {};
  const ports = (list) => (Array.isArray(list) ? list : []).map((p) => ({ name: String(p && p.name), kind: 0 }));
  const params = (Array.isArray(defn.params) ? defn.params : []).map((p) => ({ name: String(p && p.name), type: "raw", default: null }));
  return {
    inputs: ports(defn.inputs),
    outputs: ports(defn.outputs),
    params: [{ name: "repeat", type: "int", default: 1, min: 1, max: 1000 }, ...params],
  };
}

function addParamWidget(node, p) {
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

function errorLines(ctx, node) {
  return node.specErrors.flatMap((msg) => wrap(ctx, msg, node.size[0]));
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
