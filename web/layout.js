// Node placement without overlaps: a free spot for a node the pack adds, and room below a node
// that grows (its plot unfolds, a run's warnings need lines). Graph coordinates; a node's
// rectangle includes its title bar. No extension is registered here: adacache.js imports it.
import { app } from "../../scripts/app.js";

const GAP = 20; // space kept between nodes

export function nodeRect(node) {
  const title = node.constructor?.title_mode === 1 ? 0
    : (globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30);
  return [node.pos[0], node.pos[1] - title, node.size[0], node.size[1] + title];
}

export function overlaps(a, b, gap = 0) {
  return a[0] < b[0] + b[2] + gap && b[0] < a[0] + a[2] + gap &&
    a[1] < b[1] + b[3] + gap && b[1] < a[1] + a[3] + gap;
}

function nodesOf(graph) {
  return graph?._nodes ?? graph?.nodes ?? [];
}

// Where a node of `size` fits near `anchor` (a node) without touching any other node: left of
// it, below, above, right, then further out on rings, the nearest first.
export function freeSpot(graph, size, anchor) {
  const title = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const [ax, ay, aw, ah] = nodeRect(anchor);
  const others = nodesOf(graph).map(nodeRect);
  const fits = (x, y) => !others.some((r) => overlaps([x, y - title, size[0], size[1] + title],
    r, GAP));
  const candidates = [];
  for (let ring = 0; ring < 12; ring++) {
    const d = ring * (GAP + 40);
    candidates.push(
      [ax - size[0] - GAP - d, ay + title], [ax, ay + ah + title + GAP + d],
      [ax, ay - size[1] - GAP - d], [ax + aw + GAP + d, ay + title],
      [ax - size[0] - GAP - d, ay + ah + title + GAP + d],
    );
  }
  const dist = ([x, y]) => Math.hypot(x - ax, y - ay);
  candidates.sort((p, q) => dist(p) - dist(q));
  return candidates.find(([x, y]) => fits(x, y)) ??
    [ax, Math.max(...others.map((r) => r[1] + r[3])) + title + GAP];
}

// Sets `node`'s height; when it grows, the nodes it would cover are moved down (and those they
// would then cover, in turn), so no node ends up under another.
export function setNodeHeight(node, height) {
  if (Math.abs(height - node.size[1]) < 0.5) return;
  const graph = node.graph ?? app.graph;
  const before = nodeRect(node);
  const grew = height > node.size[1];
  if (node.setSize) node.setSize([node.size[0], height]);
  else node.size[1] = height;
  if (grew) makeRoom(graph, node, before);
  graph?.setDirtyCanvas?.(true, true);
}

function makeRoom(graph, grown, before) {
  const moved = [[grown, before]];
  const all = nodesOf(graph);
  for (let i = 0; i < moved.length && i < 1000; i++) {
    const [mover, old] = moved[i];
    const now = nodeRect(mover);
    for (const other of all) {
      if (other === mover || other === grown) continue;
      const r = nodeRect(other);
      // newly covered by the mover, below its old top (an overlap the artist made stays)
      if (r[1] < old[1] || overlaps(old, r) || !overlaps(now, r)) continue;
      other.pos[1] += now[1] + now[3] + GAP - r[1];
      moved.push([other, r]);
    }
  }
}

// A node saved smaller than its widgets need is grown by the frontend while the workflow loads,
// over the nodes below it. After the load (`saved`: the workflow's nodes as saved), the nodes
// that grew make room below them, top to bottom, as a node growing later does. Only in a
// workflow with this pack's nodes: other workflows are left as their authors laid them out.
export function roomAfterLoad(graph, saved) {
  const nodes = nodesOf(graph);
  if (!nodes.some((n) => String(n.type ?? "").startsWith("AdaCache"))) return;
  const savedSize = new Map((saved ?? []).map((n) => [String(n.id), n.size]));
  const grown = nodes.filter((n) => {
    const size = savedSize.get(String(n.id));
    return Array.isArray(size) && n.size[1] > size[1] + 0.5;
  }).sort((a, b) => a.pos[1] - b.pos[1]);
  for (const node of grown) {
    const [x, y, , h] = nodeRect(node);
    const [savedW, savedH] = savedSize.get(String(node.id));
    makeRoom(graph, node, [x, y, savedW, h - node.size[1] + savedH]); // as saved, where it is
  }
  if (grown.length) graph?.setDirtyCanvas?.(true, true);
}

// After a node's DOM widget is added (or a saved node loaded): as tall as its widgets need.
export function fitToWidgets(node) {
  requestAnimationFrame(() => {
    const want = node.computeSize?.()[1];
    if (want && node.size[1] < want - 0.5) setNodeHeight(node, want);
  });
}

export function rectsOverlap(graph = app.graph) {
  const nodes = nodesOf(graph);
  const out = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      if (overlaps(nodeRect(nodes[i]), nodeRect(nodes[j]))) out.push([nodes[i].id, nodes[j].id]);
    }
  }
  return out;
}
