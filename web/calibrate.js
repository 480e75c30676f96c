// AdaCache Calibrate shows its result on the node after a run: the runs it fitted, the name it
// saved, and the steps the fitted plan computes on those runs (the node's UI output
// "adacache_calibration", nodes/calibration_nodes.py).
import { app } from "../../scripts/app.js";
import { CALIBRATE_NODES } from "./common.js";
import { fitToWidgets } from "./layout.js";

const LINES = 3;
const LINE_H = 15;

export function resultLines(p) {
  if (!p) return ["no result yet: queue the workflow"];
  const counts = p.predicted_computed ?? [];
  const mean = counts.length ? counts.reduce((a, b) => a + b, 0) / counts.length : null;
  return [
    `plan fitted on ${p.runs} recorded run(s) of ${p.n_steps} steps`,
    p.name ? `plan saved as '${p.name}' (Codebook Editor: saved)` : "not saved (no name given)",
    mean ? `predicted: ${counts.length > 1 ? "about " : ""}${Math.round(mean)}/${p.n_steps} ` +
      `steps computed (${(p.n_steps / mean).toFixed(1)}x fewer)` : "predicted: no steps",
  ];
}

function addResultWidget(node) {
  const box = document.createElement("div");
  box.className = "adacache-calibration";
  Object.assign(box.style, { font: "11px/15px sans-serif", color: "#cfcfcf", padding: "2px 6px",
    whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis", width: "100%",
    boxSizing: "border-box" });
  const show = (payload) => {
    const lines = resultLines(payload);
    box.replaceChildren(...lines.map((text) => {
      const line = document.createElement("div");
      line.textContent = text;
      line.title = text;
      line.style.overflow = "hidden";
      line.style.textOverflow = "ellipsis";
      return line;
    }));
    box.dataset.result = payload ? JSON.stringify(payload) : "";
    box.style.color = payload ? "#cfcfcf" : "#8a8a8a";
  };
  show(null);
  // fixed: a result never makes the node grow (the frontend keeps 10 px above and below)
  const height = LINES * LINE_H + 26;
  node.addDOMWidget("adacache_result", "adacache-calibration", box, {
    serialize: false, hideOnZoom: false, getMinHeight: () => height, getMaxHeight: () => height,
  }).serialize = false;
  const onConfigure = node.onConfigure;
  node.onConfigure = function () {
    const r = onConfigure?.apply(this, arguments);
    fitToWidgets(this); // a workflow saved before this widget existed
    return r;
  };
  const onExecuted = node.onExecuted;
  node.onExecuted = function (message) {
    const r = onExecuted?.apply(this, arguments);
    show(message?.adacache_calibration?.[0] ?? null);
    return r;
  };
}

app.registerExtension({
  name: "adacache.calibrate",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!CALIBRATE_NODES.has(nodeData.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      addResultWidget(this);
      fitToWidgets(this);
      return r;
    };
  },
});
