// AdaCache frontend: "Use this codebook" and the Codebook Editor's saved codebooks.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  CALIBRATE_NODES, EDITOR, USE_ABOVE, allNodes, isPlan, linkById, setWidget, widget,
} from "./common.js";
import { freeSpot } from "./layout.js";
import { stateOf } from "./state.js";

// --- "Use this codebook": into the Codebook Editor feeding this AdaCache Apply --------------------
// Never undoes work: a calibrating Apply that feeds AdaCache Calibrate keeps its preset (the
// written codebook waits in the editor, the next queue still calibrates), and a codebook from
// another node (a calibrated plan from AdaCache Calibrate) is replaced only after the artist
// confirms, being told what changes.
export function useCodebook(apply, cb, confirmReplace = (text) => window.confirm(text)) {
  if (!cb) return null;
  const graph = apply.graph ?? app.graph;
  const slot = apply.inputs?.findIndex((i) => i.name === "codebook") ?? -1;
  let editor = null;
  const linkId = slot >= 0 ? apply.inputs[slot].link : null;
  if (linkId != null) {
    const link = linkById(graph, linkId);
    editor = link ? graph.getNodeById(link.origin_id) : null;
  }
  if (editor && editor.type !== EDITOR) {
    const source = editor.title || editor.type;
    const planned = isPlan(stateOf(apply).codebook);
    const text = `Replace the codebook from "${source}"` +
      (planned ? " (a calibrated plan)" : "") + " with a Codebook Editor holding these " +
      `thresholds and rates? The next run then uses them` +
      (planned ? " instead of the plan, which picks its steps from the model's profile." : ".");
    if (!confirmReplace(text)) return null;
  }
  if (!editor || editor.type !== EDITOR) {
    editor = LiteGraph.createNode(EDITOR);
    // its laid-out size (DOM widgets included), in free space: never over another node
    const size = [editor.size?.[0] ?? 320, Math.max(editor.size?.[1] ?? 0,
      editor.computeSize?.()[1] ?? 160)];
    editor.setSize?.(size);
    editor.pos = freeSpot(graph, size, apply);
    graph.add(editor);
    editor.connect(0, apply, slot);
  }
  setWidget(editor, "thresholds", cb.thresholds.map((t) => String(t)).join(", "));
  setWidget(editor, "rates", cb.rates.join(", "));
  setWidget(editor, "saved", USE_ABOVE);
  // a calibrating Apply that feeds AdaCache Calibrate stays calibrating (custom would make the
  // next queue fail there); anywhere else the written codebook takes effect on the next run
  if (!(widget(apply, "preset")?.value === "calibrate" && feedsCalibrate(graph, apply))) {
    setWidget(apply, "preset", "custom");
  }
  graph.setDirtyCanvas?.(true, true);
  app.graph.setDirtyCanvas?.(true, true);
  return editor;
}

// Whether AdaCache Calibrate (or its Raylight node) is downstream of ``apply`` along links of
// the Apply's own output type: MODEL (through other model patches), or Raylight's RAY_ACTORS
// (through Raylight's sampler, which passes the actors on).
function feedsCalibrate(graph, apply) {
  const type = apply.outputs?.[0]?.type;
  const seen = new Set([apply.id]);
  const todo = [apply];
  while (todo.length) {
    for (const output of todo.pop().outputs ?? []) {
      if (output.type !== type) continue;
      for (const id of output.links ?? []) {
        const target = graph.getNodeById(linkById(graph, id)?.target_id);
        if (!target || seen.has(target.id)) continue;
        if (CALIBRATE_NODES.has(target.type)) return true;
        seen.add(target.id);
        todo.push(target);
      }
    }
  }
  return false;
}

// --- Codebook Editor: picking a saved codebook or plan shows its values -------------------------
// The saved files the server last listed, by name: {kind: "codebook" | "calibrated plan", speed,
// thresholds, rates, ...} (nodes/saved_codebooks.py), so the editor can say which kind it uses.
export const savedFiles = new Map();

export async function savedCodebooks() {
  try {
    const res = await api.fetchApi("/adacache/codebooks");
    if (!res.ok) return [];
    const books = (await res.json()).codebooks ?? [];
    savedFiles.clear();
    for (const book of books) savedFiles.set(book.name, book);
    return books;
  } catch {
    return [];
  }
}

// A saved file's name in the 'saved' list and widget, with what it is: "demo · plan 3x" or
// "mine · codebook" (the value stays the file's name, which saved workflows hold).
export function fileLabel(name) {
  const file = name && name !== USE_ABOVE ? savedFiles.get(name) : null;
  if (!file) return name ?? "";
  return isPlan(file) ? `${name} · plan ${file.speed ?? "?"}x` : `${name} · codebook`;
}

export function setupEditor(node) {
  const saved = widget(node, "saved");
  if (!saved) return;
  saved.options ??= {};
  saved.options.getOptionLabel = fileLabel;
  if (!savedFiles.size) savedCodebooks().then(() => node.setDirtyCanvas?.(true, true));
  const cb = saved.callback;
  saved.callback = function (value) {
    const out = cb?.apply(this, arguments);
    if (value && value !== USE_ABOVE) {
      savedCodebooks().then((books) => {
        const book = books.find((b) => b.name === value);
        if (!book) return;
        const t = widget(node, "thresholds"), r = widget(node, "rates");
        if (t) t.value = book.thresholds.join(", ");
        if (r) r.value = book.rates.join(", ");
        node.setDirtyCanvas?.(true, true);
      });
    }
    return out;
  };
}

export async function refreshSavedOptions() {
  const editors = allNodes().filter((n) => n.type === EDITOR);
  if (!editors.length) return;
  const books = await savedCodebooks();
  if (!books.length) return;
  for (const n of editors) {
    const w = widget(n, "saved");
    if (w?.options) w.options.values = [USE_ABOVE, ...books.map((b) => b.name)];
  }
}
