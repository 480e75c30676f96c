// AdaCache frontend. "AdaCache Apply" (and "AdaCache Apply (Raylight)", rank 0's run) shows its
// sampling run live (adacache.progress, then adacache.trace): raw distance per compute step
// against the codebook's thresholds, the MoReg factor, which steps ran the block stack, and a
// what-if: drag a threshold or click a band's
// rate and see the schedule that codebook would give. "Use this codebook" writes it into the
// Codebook Editor's widgets (saved with the workflow). Plain ES module; DOM widgets with
// serialize: false, so nothing visual lands in the prompt.
// Entry module: the events from the server and the node registration; the features live in
// common, state, plot, plot_widget, use_codebook, whatif, layout, calibrate and codebook_checks.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { COLORS, EDITOR, PLOT_NODES, allNodes, hasPlot, nodeForId, redrawApply } from "./common.js";
import { fitToWidgets, roomAfterLoad } from "./layout.js";
import { addPlotWidget } from "./plot_widget.js";
import { editorCodebook, startRun, stateOf } from "./state.js";
import { refreshSavedOptions, setupEditor, useCodebook } from "./use_codebook.js";

// --- events ------------------------------------------------------------------------------------
const ourPrompts = new Set(); // prompts this client queued (the server sends their events here)
let loading = []; // the nodes of the workflow being loaded, as saved

function applyNodeFor(detail) {
  if (detail?.prompt_id && ourPrompts.size && !ourPrompts.has(detail.prompt_id)) return null;
  const node = nodeForId(detail?.node);
  return hasPlot(node) ? node : null;
}

function onProgress(detail) {
  const node = applyNodeFor(detail);
  if (!node) return;
  let st = stateOf(node);
  if (st.run !== detail.run) st = startRun(node, detail);
  st.nSteps = detail.n_steps;
  if (st.records.length < st.nSteps) st.records.length = st.nSteps;
  for (const r of detail.earlier ?? []) st.records[r.step] = r; // reused steps held back
  st.records[detail.step] = detail.record;
  if (detail.codebook) {  // what does not change during a run comes with its first message
    st.codebook = detail.codebook;
    st.moreg = !!detail.moreg;
    st.calibration = !!detail.calibration;
  }
  st.startCodebook ??= editorCodebook(node);
  st.nextCompute = detail.next_compute ?? null;
  st.text = detail.text ?? `step ${detail.step + 1}/${st.nSteps} · computed ${detail.computed_steps}` +
    (detail.next_compute != null ? ` · next compute at ${detail.next_compute + 1}` : "");
  redrawApply(node);
}

function onTrace(detail) {
  const node = applyNodeFor(detail);
  if (!node) return;
  let st = stateOf(node);
  if (st.run !== detail.run || !st.run) st = startRun(node, { ...detail, n_steps: detail.steps });
  st.summary = detail;
  st.nSteps = detail.steps;
  st.records = detail.trace.map((r) => (r.computed === null ? null : r));
  st.codebook ??= detail.codebook_values ?? null;
  st.startCodebook ??= editorCodebook(node);
  st.moreg = !!detail.moreg;
  // a calibration trace: every reached step computed, so each has its own distance (gap 1)
  st.calibration = !!detail.calibration ||
    (detail.steps_reached > 4 && detail.computed_steps === detail.steps_reached);
  st.stale = false;
  redrawApply(node);
}

function onPromptEnd(promptId) {
  // Plots greyed for a prompt that never sampled them: say so instead of waiting forever.
  for (const n of allNodes()) {
    const st = hasPlot(n) ? stateOf(n) : null;
    if (st?.stale && st.staleFor === promptId) {
      Object.assign(st, { stale: false, notRerun: true });
      redrawApply(n);
    }
  }
}

function onPromptStart(promptId) {
  if (!promptId || ourPrompts.has(promptId)) return;
  ourPrompts.add(promptId);
  for (const n of allNodes()) {
    if (!hasPlot(n)) continue;
    const st = stateOf(n);
    if (st.nSteps) {
      st.stale = true; // until this prompt's first point for the node arrives
      st.staleFor = promptId;
      redrawApply(n);
    }
  }
}

app.registerExtension({
  name: "adacache.widgets",
  async setup() {
    api.addEventListener("execution_start", ({ detail }) => onPromptStart(detail?.prompt_id));
    api.addEventListener("executing", ({ detail }) => {
      if (detail?.prompt_id) onPromptStart(detail.prompt_id);
    });
    api.addEventListener("adacache.progress", ({ detail }) => onProgress(detail));
    api.addEventListener("adacache.trace", ({ detail }) => onTrace(detail));
    api.addEventListener("execution_success", ({ detail }) => {
      onPromptEnd(detail?.prompt_id);
      refreshSavedOptions();
    });
    for (const ev of ["execution_error", "execution_interrupted"]) {
      api.addEventListener(ev, ({ detail }) => onPromptEnd(detail?.prompt_id));
    }
  },
  beforeConfigureGraph(graphData) {
    loading = graphData?.nodes ?? [];
  },
  afterConfigureGraph() { // nodes saved smaller than their widgets grew: make room below them
    roomAfterLoad(app.graph, loading);
    loading = [];
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (PLOT_NODES.has(nodeData.name)) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        addPlotWidget(this);
        this.size[0] = Math.max(this.size[0], 440); // room for the plot's axes and labels
        fitToWidgets(this); // a new node is made as tall as its widgets (the plot's header)
        return r;
      };
    }
    if (nodeData.name === EDITOR) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        setupEditor(this);
        return r;
      };
    }
  },
});

// For tests and people's tools: the schedule rule and the per-node state.
window.adacache = {
  useCodebook, stateOf, refreshSavedOptions, COLORS,
  plotLayout: (canvas) => canvas.__adacache?.layout ?? null,
  distances: (canvas) => stateOf(canvas.__adacache.node).records.map((r) => r?.distance ?? null)
    .filter((d, t) => d !== null && t >= 1),
};
