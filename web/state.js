// AdaCache frontend: per-node state, one run (live or finished) and the what-if codebook.
import { app } from "../../scripts/app.js";
import { EDITOR, linkById, parseList, widget } from "./common.js";

// --- per-node state: one run (live or finished) and the what-if codebook -----------------------
function emptyState() {
  return { run: null, promptId: null, nSteps: 0, records: [], codebook: null, moreg: false,
    calibration: false, summary: null, stale: false, staleFor: null, notRerun: false, text: "",
    whatif: null, hover: null, frozenY: null, startCodebook: null, nextCompute: null };
}

export function stateOf(node) {
  node.__adacache ??= emptyState();
  return node.__adacache;
}

export function startRun(node, detail) {
  const st = stateOf(node);
  const keep = { whatif: null, hover: st.hover };
  Object.assign(st, emptyState(), keep, {
    run: detail.run, promptId: detail.prompt_id, nSteps: detail.n_steps ?? detail.steps ?? 0,
  });
  st.records = new Array(st.nSteps).fill(null);
  return st;
}

const FAST30 = { thresholds: [0.08, 0.16, 0.24, 0.32, 0.4, 1], rates: [6, 5, 4, 3, 2, 1] };

// The codebook the plot shows and the what-if starts from: the edited one, else the run's; a
// calibration run computes every step with a one-entry codebook, so there the connected Codebook
// Editor's values (or the fast preset's at 30 steps) are the starting point.
export function codebookOf(st) {
  if (st.whatif) return st.whatif;
  if (st.codebook && st.codebook.thresholds.length > 1) return st.codebook;
  return st.codebook ? (st.startCodebook ?? FAST30) : null;
}

export function editorCodebook(apply) {
  const slot = apply.inputs?.findIndex((i) => i.name === "codebook") ?? -1;
  const linkId = slot >= 0 ? apply.inputs[slot].link : null;
  if (linkId == null) return null;
  const graph = apply.graph ?? app.graph;
  const link = linkById(graph, linkId);
  const editor = link ? graph.getNodeById(link.origin_id) : null;
  if (editor?.type !== EDITOR) return null;
  const thresholds = parseList(widget(editor, "thresholds")?.value).map(Number);
  const rates = parseList(widget(editor, "rates")?.value).map(Number);
  const ok = thresholds.length > 1 && thresholds.length === rates.length &&
    [...thresholds, ...rates].every(Number.isFinite);
  return ok ? { thresholds, rates } : null;
}
