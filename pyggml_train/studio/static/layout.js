// Where nodes go on the canvas: a left-to-right layout along the links (dagre, from npm) and
// the free spot nearest to where a new node is wanted. Boxes are [x, y, width, height] in
// canvas units, titles included.
/* global dagre */

const GAP = 24; // canvas units kept clear around a node

// {id, size: [width, height]} nodes and [from id, to id] edges -> Map id -> [x, y] (top left)
export function arrange(nodes, edges) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 40, ranksep: 80, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: n.size[0], height: n.size[1] });
  for (const [a, b] of edges) g.setEdge(a, b);
  dagre.layout(g);
  const at = new Map();
  for (const n of nodes) {
    const { x, y, width, height } = g.node(n.id);
    at.set(n.id, [Math.round(x - width / 2), Math.round(y - height / 2)]);
  }
  return at;
}

export function overlaps(a, b, gap = 0) {
  return (
    a[0] < b[0] + b[2] + gap &&
    b[0] < a[0] + a[2] + gap &&
    a[1] < b[1] + b[3] + gap &&
    b[1] < a[1] + a[3] + gap
  );
}

// the top left of a [width, height] box nearest to ``want`` that overlaps none of ``boxes``:
// rings of candidates around it, nearest first
export function freeSpot(boxes, want, size) {
  const free = (x, y) => !boxes.some((b) => overlaps([x, y, size[0], size[1]], b, GAP));
  const step = 40;
  for (let ring = 0; ring < 80; ring++) {
    const spots = [];
    for (let i = -ring; i <= ring; i++) {
      for (let j = -ring; j <= ring; j++) {
        if (Math.max(Math.abs(i), Math.abs(j)) === ring) spots.push([i * step, j * step]);
      }
    }
    spots.sort((p, q) => Math.hypot(...p) - Math.hypot(...q));
    for (const [dx, dy] of spots) if (free(want[0] + dx, want[1] + dy)) return [want[0] + dx, want[1] + dy];
  }
  const right = Math.max(...boxes.map((b) => b[0] + b[2]));
  return [right + 2 * GAP, want[1]];
}
