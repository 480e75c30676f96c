// AdaCache frontend: the plot widget on AdaCache Apply (canvas, tooltip, fold, pointer editing
// of thresholds and rates, the toolbar).
import { app } from "../../scripts/app.js";
import { BAR_H, COLORS, LINE_H, PLOT_H, SHORT_H, WARN_LINES, fmt, isPlan, sig3 } from "./common.js";
import { setNodeHeight } from "./layout.js";
import { drawPlot, headerText, wrapWarnings } from "./plot.js";
import { codebookOf, stateOf } from "./state.js";
import { useCodebook } from "./use_codebook.js";

// --- the plot widget ---------------------------------------------------------------------------
const tooltip = (() => {
  let el = null;
  return {
    show(x, y, html) {
      if (!el) {
        el = document.createElement("div");
        el.className = "adacache-tooltip";
        Object.assign(el.style, {
          position: "fixed", zIndex: 10000, pointerEvents: "none", background: "#1b1b1bee",
          color: "#eee", border: "1px solid #555", borderRadius: "4px", padding: "4px 6px",
          font: "11px/1.35 monospace", whiteSpace: "pre-wrap", maxWidth: "480px",
        });
        document.body.appendChild(el);
      }
      el.textContent = html;
      el.style.display = "block";
      el.style.left = `${x + 14}px`;
      el.style.top = `${y + 10}px`;
    },
    hide() {
      if (el) el.style.display = "none";
    },
  };
})();

function recordText(r, t, st) {
  const cb = codebookOf(st);
  const lines = [
    `step      ${t + 1} of ${st.nSteps}`,
    `sigma     ${fmt(r?.sigma)}`,
    `run       ${r?.computed === true ? "computed" : r?.computed === false ? "reused" : "not reached"}`,
    `reason    ${r?.reason || "–"}`,
    `calls     ${r?.calls ?? "–"}`,
    `distance  ${fmt(r?.distance)}`,
    `motion    ${fmt(r?.motion)}`,
    `MoReg ×   ${fmt(r?.moreg_factor)}`,
    `regular.  ${fmt(r?.regularized_distance)}`,
    `rate      ${r?.rate ?? "–"}`,
  ];
  const what = st.prediction;  // the server's what-if (whatif.js), once it answered
  if (cb && what?.rates) {
    lines.push(what.rates[t] != null ? `what-if   computed, rate ${what.rates[t]}` : "what-if   reused");
  }
  return lines.join("\n");
}

export function addPlotWidget(node) {
  const box = document.createElement("div");
  box.className = "adacache-plot";
  Object.assign(box.style, { display: "flex", flexDirection: "column", width: "100%" });
  const canvas = document.createElement("canvas");
  canvas.className = "adacache-adacache_schedule";
  Object.assign(canvas.style, { width: "100%", height: `${SHORT_H}px`, touchAction: "none" });
  const bar = document.createElement("div");
  Object.assign(bar.style, { display: "none", gap: "6px", height: `${BAR_H - 4}px`,
    alignItems: "center", font: "11px sans-serif", color: COLORS.dim, marginTop: "2px" });
  const button = (label, title) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    Object.assign(b.style, { font: "11px sans-serif", padding: "1px 8px", cursor: "pointer",
      whiteSpace: "nowrap", flex: "0 0 auto",
      background: "#333", color: "#ddd", border: "1px solid #555", borderRadius: "3px" });
    bar.appendChild(b);
    return b;
  };
  const fold = button("▾ fold", "Fold the plot to its header line (unfold to see it again)");
  fold.className = "adacache-fold";
  const use = button("Use this codebook", "Write the codebook shown into the connected Codebook " +
    "Editor (one is added if none is connected) and set preset to custom (an Apply feeding " +
    "AdaCache Calibrate keeps 'calibrate'; a connected plan is replaced only after you confirm)");
  use.className = "adacache-use";
  const reset = button("Reset", "Back to the codebook the run used");
  reset.className = "adacache-reset";
  const hint = document.createElement("span");
  hint.textContent = "drag a threshold · click τ ±1";
  hint.title = "Drag a threshold line to move it; click a band's τ to add 1, shift-click to " +
    "take 1 away. The run strip below shows the schedule that codebook would give.";
  Object.assign(hint.style, { whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis",
    minWidth: "0" });
  bar.appendChild(hint);
  box.append(canvas, bar);

  // The canvas is as tall as what it shows: two lines before the first run or when folded, the
  // plot after a run (taller only for many warning lines). The node follows; nodes it would
  // cover move down (layout.js).
  let height = SHORT_H;
  let barShown = false;
  const total = () => height + (barShown ? BAR_H : 0) + 4;
  const w = node.addDOMWidget("adacache_schedule", "adacache-plot", box, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: total,
    getMaxHeight: total,
  });
  w.serialize = false; // purely visual: never in widgets_values nor the prompt
  const fitNode = () => {
    const want = node.computeSize?.()[1];
    if (want && Math.abs(want - node.size[1]) >= 1) setNodeHeight(node, want);
  };
  let layout = null;
  let draws = 0;
  let drawnScale = 0;
  let warnText = [];
  const redraw = () => {
    const cssW = canvas.clientWidth || 360;
    const st = stateOf(node);
    const ctx = canvas.getContext("2d");
    ctx.font = "11px sans-serif";
    // an interrupted run's one warning is what its header says: shown once, in the header
    const warnings = st.summary && !st.stale && !st.notRerun && !st.summary.interrupted
      ? wrapWarnings(ctx, st.summary.warnings ?? [], cssW - 16) : [];
    const folded = !!node.properties?.adacache_folded;
    const short = folded || !st.nSteps;
    const h = short ? SHORT_H : PLOT_H + Math.max(0, warnings.length - WARN_LINES) * LINE_H;
    if (h !== height || barShown !== !!st.nSteps) {
      height = h;
      barShown = !!st.nSteps;
      canvas.style.height = `${h}px`;
      bar.style.display = barShown ? "flex" : "none";
      for (const b of [use, reset, hint]) b.style.display = folded ? "none" : "";
      fold.textContent = folded ? "▸ unfold plot" : "▾ fold";
      fitNode();
    }
    // The frontend scales DOM widgets by the canvas zoom: draw at the pixels actually shown.
    drawnScale = app.canvas?.ds?.scale ?? 1;
    const ratio = (window.devicePixelRatio || 1) * Math.min(Math.max(drawnScale, 0.25), 8);
    canvas.width = Math.max(1, Math.round(cssW * ratio));
    canvas.height = Math.max(1, Math.round(h * ratio));
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssW, h);
    layout = drawPlot(ctx, cssW, h, node, warnings, short);
    warnText = warnings;
    canvas.__adacache = { node, layout };
    draws += 1;
    // readable by tests and people's tools
    Object.assign(canvas.dataset, {
      draws: String(draws),
      pixelRatio: String(ratio),
      run: st.run ?? "",
      state: !st.nSteps ? "empty" : st.stale ? "stale" : st.notRerun ? "earlier"
        : st.summary?.interrupted ? "interrupted" : st.summary ? "done" : "live",
      folded: String(folded),
      width: String(cssW),
      header: st.nSteps ? headerText(st).join("\n") : "",
      warningLines: JSON.stringify(warnText.map((l) => l.text)),
      warningWidth: String(Math.max(0, ...(layout?.warnings ?? []).map((b) => b.width))),
      points: String(st.records.filter((r) => r).length),
      rule: st.codebook?.kind ?? "", // what picked the rates: "codebook" or "calibrated plan"
      // a calibrated plan: compute steps drawn against the plan's expected change
      expected: String(isPlan(st.codebook) && !st.whatif
        ? st.records.filter((r) => r?.reference_distance != null).length : 0),
      pattern: st.records.map((r) => (r?.computed ? "C" : r?.computed === false ? "." : " ")).join(""),
      predicted: layout?.prediction ? layout.prediction.computed.join(",") : "",
      predictedCount: layout?.prediction ? String(layout.prediction.computed.length) : "",
      whatif: layout?.whatifPending ? "pending" : layout?.prediction ? "ready" : "none",
      thresholds: codebookOf(st)?.thresholds.join(",") ?? "",
      rates: codebookOf(st)?.rates.join(",") ?? "",
    });
    use.disabled = !codebookOf(st) || !!st.summary?.interrupted;
  };
  const onConfigure = node.onConfigure;
  node.onConfigure = function () { // a loaded node takes the height of what it shows
    const r = onConfigure?.apply(this, arguments);
    height = -1;
    requestAnimationFrame(redraw);
    return r;
  };
  const observer = new ResizeObserver(redraw);
  observer.observe(canvas);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    observer.disconnect();
    tooltip.hide();
    return onRemoved?.apply(this, arguments);
  };
  const onDrawForeground = node.onDrawForeground;
  node.onDrawForeground = function () {
    if ((app.canvas?.ds?.scale ?? 1) !== drawnScale) redraw(); // stay crisp when zoomed
    return onDrawForeground?.apply(this, arguments);
  };

  // pointer: hover tooltip, threshold dragging, band rate clicks
  const local = (e) => {
    const rect = canvas.getBoundingClientRect();
    const k = canvas.clientWidth / (rect.width || 1);
    return [(e.clientX - rect.left) * k, (e.clientY - rect.top) * k];
  };
  const lineAt = (py) => {
    const cb = codebookOf(stateOf(node));
    if (!layout?.Y || !cb) return null;
    let best = null;
    cb.thresholds.slice(0, -1).forEach((t, i) => {
      const d = Math.abs(layout.Y.y(t) - py);
      if (d <= 5 && (best === null || d < best.d)) best = { i, d };
    });
    return best?.i ?? null;
  };
  let dragging = null;
  canvas.addEventListener("pointerdown", (e) => {
    const st = stateOf(node);
    if (!layout || !codebookOf(st)) return;
    const [px, py] = local(e);
    const band = layout.bands?.find((b) => px >= b.x0 && px <= b.x1 && py >= b.y0 && py <= b.y1);
    if (band) {
      changeRate(node, band.k, e.shiftKey ? -1 : 1);
      redraw();
      e.stopPropagation();
      e.preventDefault();
      return;
    }
    const i = px >= layout.left - 4 && px <= layout.right + 4 ? lineAt(py) : null;
    if (i !== null) {
      dragging = i;
      st.frozenY = layout.Y; // the axis holds still under the pointer while dragging
      canvas.setPointerCapture?.(e.pointerId);
      e.stopPropagation();
      e.preventDefault();
    }
  });
  canvas.addEventListener("pointermove", (e) => {
    const st = stateOf(node);
    const [px, py] = local(e);
    if (dragging !== null && layout?.Y) {
      moveThreshold(node, dragging, layout.Y.inv(Math.min(Math.max(py, layout.top), layout.bottom)));
      redraw();
      e.stopPropagation();
      return;
    }
    if (!layout) return;
    const line = px >= layout.left && px <= layout.right ? lineAt(py) : null;
    const t = Math.floor((px - layout.left) / layout.colW);
    const step = t >= 0 && t < st.nSteps && px <= layout.right ? t : null;
    canvas.style.cursor = line !== null ? "ns-resize" : "default";
    const changed = st.hover?.step !== step || st.hover?.line !== line;
    st.hover = { step, line };
    if (changed) redraw();
    const warning = layout.warnings?.find((b) => py >= b.y0 && py <= b.y1);
    if (warning && line === null) {
      tooltip.show(e.clientX, e.clientY, `⚠ ${st.summary.warnings[warning.index]}`);
    } else if (line !== null) {
      const cb = codebookOf(st);
      tooltip.show(e.clientX, e.clientY, `threshold ${line + 1}: ${fmt(cb.thresholds[line])}\n` +
        `below: rate ${cb.rates[line]} · above: rate ${cb.rates[line + 1]}\ndrag to move`);
    } else if (step !== null) {
      tooltip.show(e.clientX, e.clientY, recordText(st.records[step], step, st));
    } else {
      tooltip.hide();
    }
  });
  const endDrag = (e) => {
    if (dragging !== null) {
      dragging = null;
      stateOf(node).frozenY = null;
      canvas.releasePointerCapture?.(e.pointerId);
      redraw();
    }
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("pointerleave", () => {
    const st = stateOf(node);
    st.hover = null;
    tooltip.hide();
    redraw();
  });
  use.addEventListener("click", (e) => {
    e.stopPropagation();
    useCodebook(node, codebookOf(stateOf(node)));
    redraw();
  });
  fold.addEventListener("click", (e) => {
    e.stopPropagation();
    node.properties ??= {};
    node.properties.adacache_folded = !node.properties.adacache_folded;
    redraw();
  });
  reset.addEventListener("click", (e) => {
    e.stopPropagation();
    stateOf(node).whatif = null;
    redraw();
  });
  w.redraw = redraw;
  w.canvas = canvas;
  return w;
}

function editable(node) {
  const st = stateOf(node);
  const cb = codebookOf(st);
  if (!cb) return null;
  st.whatif = { thresholds: [...cb.thresholds], rates: [...cb.rates] };
  return st.whatif;
}

function changeRate(node, k, delta) {
  const cb = editable(node);
  if (!cb || k < 0 || k >= cb.rates.length) return;
  cb.rates[k] = Math.max(1, Math.round(cb.rates[k] + delta));
}

function moveThreshold(node, i, value) {
  const cb = editable(node);
  if (!cb) return;
  const v = sig3(value);
  const below = i > 0 ? cb.thresholds[i - 1] : -Infinity;
  if (!(v > below) || !(v > 0)) return;
  const t = cb.thresholds;
  t[i] = v;
  for (let j = i + 1; j < t.length; j++) if (!(t[j] > t[j - 1])) t[j] = sig3(t[j - 1] * 1.5);
}
