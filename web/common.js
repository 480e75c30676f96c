// AdaCache frontend: what every module shares (node types, sizes, colours, small helpers).
import { app } from "../../scripts/app.js";

// The colours shared with the AdaCache Report image (nodes/report.py reads the same file).
const SHARED = await fetch(new URL("./colors.json", import.meta.url))
  .then((r) => r.json()).catch(() => ({}));

export const APPLY = "AdaCacheApply";
// The nodes that show a run's plot: AdaCache Apply, and its Raylight twin (rank 0's run,
// relayed from the Ray workers by nodes/raylight.py).
export const PLOT_NODES = new Set([APPLY, "AdaCacheApplyRaylight"]);
export function hasPlot(node) {
  return PLOT_NODES.has(node?.type) || PLOT_NODES.has(node?.comfyClass);
}
// AdaCache Calibrate and its Raylight node: the nodes a calibrating Apply feeds.
export const CALIBRATE_NODES = new Set(["AdaCacheCalibrate", "AdaCacheCalibrateRaylight"]);
export const EDITOR = "AdaCacheCodebookEditor";
export const USE_ABOVE = "(use the values above)";
export const PLOT_H = 280; // canvas height in CSS pixels, with a run shown
export const SHORT_H = 32; // folded, or no run yet: the two header lines
export const BAR_H = 26; // toolbar under the plot
export const LINE_H = 13;
export const WARN_LINES = 4; // warning lines that fit in PLOT_H; more make the node taller
export const COLORS = {
  text: "#dddddd",
  dim: "#9a9a9a",
  grid: "#3a3a3a",
  distance: SHARED.distance ?? "#42a5f5",
  regularized: "#ce93d8",
  factor: SHARED.factor ?? "#fb8c00",
  computed: SHARED.computed ?? "#43a047",
  reused: SHARED.reused ?? "#9e9e9e",
  unreached: "#2a2a2a",
  whatif: "#81c784",
  warn: SHARED.warn ?? "#f4511e",
  thresholds: [SHARED.threshold ?? "#e57373", "#f06292", "#ba68c8", "#9575cd", "#7986cb",
    "#4fc3f7", "#4db6ac"],
};


// --- small helpers ----------------------------------------------------------------------------
export function parseList(text) {
  return String(text ?? "").split(/[,;]/).map((s) => s.trim()).filter((s) => s.length);
}

export function sig3(v) {
  return Number(Number(v).toPrecision(3));
}

export function fmt(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)
    ? v.toExponential(2) : String(Number(v.toPrecision(digits)));
}

// What picked a run's rates, from the summary's typed codebook_values.kind (adacache: Codebook.KIND
// "codebook" or CalibratedPlan.KIND "calibrated plan"); a plan's thresholds are its plain
// codebook's, shown but never used by the plan.
export const PLAN = "calibrated plan";
export function isPlan(values) {
  return values?.kind === PLAN;
}

export function sameCodebook(a, b) {
  return !!a && !!b && a.thresholds.length === b.thresholds.length &&
    a.thresholds.every((t, i) => t === b.thresholds[i]) && a.rates.every((r, i) => r === b.rates[i]);
}

export function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

export function setWidget(node, name, value) {
  const w = widget(node, name);
  if (!w) return false;
  w.value = value;
  w.callback?.(value, app.canvas, node);
  return true;
}

// A node by its execution id; subgraph ids look like "12:7:5".
export function nodeForId(id) {
  let graph = app.graph;
  let node = null;
  for (const part of String(id).split(":")) {
    node = graph?.getNodeById?.(Number(part)) ?? graph?.getNodeById?.(part);
    if (!node) return null;
    graph = node.subgraph ?? graph;
  }
  return node;
}

export function allNodes(graph = app.graph, out = [], seen = new Set()) {
  if (!graph || seen.has(graph)) return out;
  seen.add(graph);
  for (const n of graph._nodes ?? graph.nodes ?? []) {
    out.push(n);
    if (n.subgraph) allNodes(n.subgraph, out, seen);
  }
  return out;
}

export function linkById(graph, id) {
  return graph.getLink?.(id) ?? graph.links?.get?.(id) ?? graph.links?.[id];
}

// Redraws an AdaCache Apply's plot (after an event, an edit or a what-if answer).
export function redrawApply(node) {
  widget(node, "adacache_schedule")?.redraw?.();
}
