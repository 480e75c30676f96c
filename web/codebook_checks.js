// Codebook checks on the canvas, before anything is queued:
// - the Codebook Editor validates its fields as they change and shows the result on the node
//   (the rules of adacache/codebook.py: Codebook.from_text, validate);
// - AdaCache Apply's preset says when a connected codebook overrides it (nodes/adacache_nodes.py:
//   a connected codebook replaces every preset but custom and calibrate).
import { app } from "../../scripts/app.js";
import { CALIBRATE_NODES, EDITOR, PLOT_NODES, USE_ABOVE, isPlan, linkById } from "./common.js";
import { fitToWidgets } from "./layout.js";
import { savedCodebooks, savedFiles } from "./use_codebook.js";

const NUMBER = /^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf(inity)?|nan)$/i; // Python's float()

// The labelled form the log prints ("thresholds: 0.03, 1 | rates: 6, 1") in either field.
function field(text, other, name) {
  for (const source of [text, other]) {
    for (const part of String(source ?? "").split("|")) {
      const at = part.indexOf(":");
      if (at >= 0 && part.slice(0, at).trim().toLowerCase() === name) return part.slice(at + 1);
    }
  }
  return String(text ?? "");
}

function split(text, name) {
  const parts = text.replace(/;/g, ",").split(",").map((p) => p.trim());
  if (parts.length === 1 && parts[0] === "") return { parts: [] };
  const empty = parts.indexOf("");
  return empty >= 0 ? { error: `${name}: entry ${empty + 1} is empty` } : { parts };
}

function pyFloat(text) {
  const t = text.toLowerCase().replace(/^\+/, "");
  if (/^-?inf(inity)?$/.test(t)) return t.startsWith("-") ? -Infinity : Infinity;
  return t.endsWith("nan") ? NaN : Number(t);
}

// null when the fields make a codebook, else the error (worded as the Python check words it).
export function checkCodebook(thresholdsText, ratesText) {
  const t = split(field(thresholdsText, ratesText, "thresholds"), "thresholds");
  if (t.error) return t.error;
  const r = split(field(ratesText, thresholdsText, "rates"), "rates");
  if (r.error) return r.error;
  const thresholds = [];
  for (const [i, v] of t.parts.entries()) {
    if (!NUMBER.test(v)) return `threshold ${i + 1} ('${v}') is not a number`;
    thresholds.push(pyFloat(v));
  }
  for (const [i, v] of r.parts.entries()) {
    if (!NUMBER.test(v)) return `rate ${i + 1} ('${v}') is not a number`;
    const n = pyFloat(v);
    if (!Number.isInteger(n) || n < 1) return `rate ${i + 1} ('${v}') must be an integer >= 1`;
  }
  if (!thresholds.length) return "codebook is empty: give at least one (threshold, rate) entry";
  if (thresholds.length !== r.parts.length) {
    return `codebook has ${thresholds.length} thresholds but ${r.parts.length} rates; each ` +
      "threshold needs exactly one rate";
  }
  for (const [i, v] of thresholds.entries()) {
    if (!Number.isFinite(v) || v <= 0) {
      return `threshold ${i + 1} (${t.parts[i]}) must be a finite number > 0`;
    }
    if (i && v <= thresholds[i - 1]) {
      return `threshold ${i + 1} (${t.parts[i]}) is not greater than threshold ${i} ` +
        `(${t.parts[i - 1]}); thresholds must be strictly increasing`;
    }
  }
  return null;
}

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function addEditorCheck(node) {
  const box = document.createElement("div");
  box.className = "adacache-codebook-check";
  Object.assign(box.style, { font: "11px/14px sans-serif", padding: "1px 6px", width: "100%",
    boxSizing: "border-box", overflow: "hidden", height: "44px" });
  node.addDOMWidget("adacache_check", "adacache-check", box, { // three lines, fixed
    serialize: false, hideOnZoom: false, getMinHeight: () => 46, getMaxHeight: () => 46,
  }).serialize = false;
  fitToWidgets(node);
  const onConfigure = node.onConfigure;
  node.onConfigure = function () {
    const r = onConfigure?.apply(this, arguments);
    fitToWidgets(this); // a workflow saved before this widget existed
    return r;
  };
  let checked = null;
  let asked = null; // the saved name whose kind was last asked of the server
  const check = () => {
    const values = ["thresholds", "rates", "saved"]
      .map((n) => String(widget(node, n)?.value ?? ""));
    const [thresholds, rates, saved] = values;
    const usesSaved = saved && saved !== USE_ABOVE; // the saved file's values, not the fields
    const file = usesSaved ? savedFiles.get(saved) : null;
    const key = [...values, file?.kind ?? ""].join("\u0000");
    if (key === checked) return;
    checked = key;
    if (usesSaved && !file && asked !== saved) { // its kind comes with the server's list
      asked = saved;
      savedCodebooks().then(check);
    }
    const error = usesSaved ? null : checkCodebook(thresholds, rates);
    box.textContent = error ? `⚠ ${error}` : usesSaved ? savedText(saved, file)
      : `✓ ${split(field(thresholds, rates, "thresholds"), "").parts.length} thresholds ` +
        "and rates";
    box.title = box.textContent;
    box.style.color = error ? "#ff7043" : "#81c784";
    box.dataset.error = error ?? "";
    node.__adacacheCheck = error;
  };
  check();
  const onDrawForeground = node.onDrawForeground;
  node.onDrawForeground = function () { // every change of the fields, typed or set by a tool
    check();
    return onDrawForeground?.apply(this, arguments);
  };
  for (const name of ["thresholds", "rates", "saved"]) {
    const w = widget(node, name);
    if (!w) continue;
    const callback = w.callback;
    w.callback = function () {
      const r = callback?.apply(this, arguments);
      check();
      return r;
    };
  }
}

// What the editor uses when a saved file is picked, named for what it is (the route's kind).
export function savedText(name, file) {
  if (isPlan(file)) {
    return `✓ uses the saved calibrated plan '${name}'` +
      (file.speed ? ` (${file.speed}x)` : "") + ": it plans each gap on the model's " +
      "profile; the fields show its plain codebook (unused)";
  }
  return file ? `✓ uses the saved codebook '${name}'` : `✓ uses the saved file '${name}'`;
}

// "preset (overridden by codebook)" (or "by plan") while a codebook or calibrated plan is
// connected and the preset is not custom (which uses it) or calibrate (which computes every step
// and leaves it unused).
export function presetLabel(node) {
  const preset = widget(node, "preset")?.value;
  const link = node.inputs?.find((i) => i.name === "codebook")?.link;
  if (link == null || preset === "custom") return null;
  const what = connectedKind(node, link);
  return preset === "calibrate" ? `preset (connected ${what} unused)`
    : `preset (overridden by ${what})`;
}

// "plan" when the link comes from AdaCache Calibrate or an editor that picked a saved plan.
function connectedKind(node, linkId) {
  const graph = node.graph ?? app.graph;
  const source = graph?.getNodeById?.(linkById(graph, linkId)?.origin_id);
  if (CALIBRATE_NODES.has(source?.type)) return "plan";
  const saved = source?.type === EDITOR ? widget(source, "saved")?.value : null;
  return saved && saved !== USE_ABOVE && isPlan(savedFiles.get(saved)) ? "plan" : "codebook";
}

function watchPreset(node) {
  const update = () => {
    const w = widget(node, "preset");
    if (!w) return;
    const label = presetLabel(node) ?? undefined;
    if (w.label !== label) {
      w.label = label;
      node.setDirtyCanvas?.(true, false);
    }
  };
  const onDrawForeground = node.onDrawForeground;
  node.onDrawForeground = function () {
    update();
    return onDrawForeground?.apply(this, arguments);
  };
  const w = widget(node, "preset");
  const callback = w?.callback;
  if (w) {
    w.callback = function () {
      const r = callback?.apply(this, arguments);
      update();
      return r;
    };
  }
  const onConnectionsChange = node.onConnectionsChange;
  node.onConnectionsChange = function () {
    const r = onConnectionsChange?.apply(this, arguments);
    update();
    return r;
  };
}

app.registerExtension({
  name: "adacache.codebook_checks",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    // every Apply (AdaCache Apply, Apply (Raylight)) has the same settings inputs
    const add = nodeData.name === EDITOR ? addEditorCheck
      : PLOT_NODES.has(nodeData.name) ? watchPreset : null;
    if (!add) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      add(this);
      return r;
    };
  },
});

window.adacacheChecks = { checkCodebook, presetLabel, savedText };
