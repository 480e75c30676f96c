// AdaCache frontend. "AdaCache Apply" shows its sampling run live (adacache.progress, then
// adacache.trace): raw distance per compute step against the codebook's thresholds, the MoReg
// factor, which steps ran the block stack, and a what-if: drag a threshold or click a band's
// rate and see the schedule that codebook would give. "Use this codebook" writes it into the
// Codebook Editor's widgets (saved with the workflow). Plain ES module; DOM widgets with
// serialize: false, so nothing visual lands in the prompt.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { freeSpot, setNodeHeight } from "./layout.js";
import { predictionFor } from "./whatif.js";

// The colours shared with the AdaCache Report image (nodes/report.py reads the same file).
const SHARED = await fetch(new URL("./colors.json", import.meta.url))
  .then((r) => r.json()).catch(() => ({}));

const APPLY = "AdaCacheApply";
const EDITOR = "AdaCacheCodebookEditor";
const USE_ABOVE = "(use the values above)";
const PLOT_H = 280; // canvas height in CSS pixels, with a run shown
const SHORT_H = 32; // folded, or no run yet: the two header lines
const BAR_H = 26; // toolbar under the plot
const LINE_H = 13;
const WARN_LINES = 4; // warning lines that fit in PLOT_H; more make the node taller
const COLORS = {
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
function parseList(text) {
  return String(text ?? "").split(/[,;]/).map((s) => s.trim()).filter((s) => s.length);
}

function sig3(v) {
  return Number(Number(v).toPrecision(3));
}

function fmt(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)
    ? v.toExponential(2) : String(Number(v.toPrecision(digits)));
}

function sameCodebook(a, b) {
  return !!a && !!b && a.thresholds.length === b.thresholds.length &&
    a.thresholds.every((t, i) => t === b.thresholds[i]) && a.rates.every((r, i) => r === b.rates[i]);
}

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

function setWidget(node, name, value) {
  const w = widget(node, name);
  if (!w) return false;
  w.value = value;
  w.callback?.(value, app.canvas, node);
  return true;
}

// A node by its execution id; subgraph ids look like "12:7:5".
function nodeForId(id) {
  let graph = app.graph;
  let node = null;
  for (const part of String(id).split(":")) {
    node = graph?.getNodeById?.(Number(part)) ?? graph?.getNodeById?.(part);
    if (!node) return null;
    graph = node.subgraph ?? graph;
  }
  return node;
}

function allNodes(graph = app.graph, out = [], seen = new Set()) {
  if (!graph || seen.has(graph)) return out;
  seen.add(graph);
  for (const n of graph._nodes ?? graph.nodes ?? []) {
    out.push(n);
    if (n.subgraph) allNodes(n.subgraph, out, seen);
  }
  return out;
}

function linkById(graph, id) {
  return graph.getLink?.(id) ?? graph.links?.get?.(id) ?? graph.links?.[id];
}

// --- per-node state: one run (live or finished) and the what-if codebook -----------------------
function emptyState() {
  return { run: null, promptId: null, nSteps: 0, records: [], codebook: null, moreg: false,
    calibration: false, summary: null, stale: false, staleFor: null, notRerun: false, text: "",
    whatif: null, hover: null, frozenY: null, startCodebook: null, nextCompute: null };
}

function stateOf(node) {
  node.__adacache ??= emptyState();
  return node.__adacache;
}

function startRun(node, detail) {
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
function codebookOf(st) {
  if (st.whatif) return st.whatif;
  if (st.codebook && st.codebook.thresholds.length > 1) return st.codebook;
  return st.codebook ? (st.startCodebook ?? FAST30) : null;
}

function editorCodebook(apply) {
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

// --- drawing -----------------------------------------------------------------------------------
function yScale(values, top, bottom) {
  const pos = values.filter((v) => v !== null && Number.isFinite(v) && v > 0);
  let lo = pos.length ? Math.min(...pos) : 0.01;
  let hi = pos.length ? Math.max(...pos) : 1;
  const log = hi / lo > 30;
  if (log) {
    lo /= 1.5;
    hi = hi * 1.5;
    const a = Math.log10(lo), b = Math.log10(hi);
    const y = (v) => bottom - ((Math.log10(Math.max(v, lo)) - a) / (b - a)) * (bottom - top);
    const inv = (py) => 10 ** (a + ((bottom - py) / (bottom - top)) * (b - a));
    const ticks = [];
    for (let e = Math.ceil(a); e <= Math.floor(b); e++) ticks.push(10 ** e);
    if (ticks.length < 2) {
      for (let e = Math.floor(a); e <= Math.ceil(b); e++) {
        for (const m of [2, 5]) if (m * 10 ** e > lo && m * 10 ** e < hi) ticks.push(m * 10 ** e);
      }
      ticks.sort((p, q) => p - q);
    }
    return { y, inv, ticks, log, lo, hi };
  }
  lo = 0;
  hi = hi * 1.15 || 1;
  const raw = hi / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const stepV = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks = [];
  for (let v = 0; v <= hi + 1e-12; v += stepV) ticks.push(Number(v.toPrecision(6)));
  const y = (v) => bottom - (Math.max(v, 0) / hi) * (bottom - top);
  const inv = (py) => ((bottom - py) / (bottom - top)) * hi;
  return { y, inv, ticks, log, lo, hi };
}

function layoutOf(w, h, st, warnLines = 0) {
  const withFactor = st.moreg || st.records.some((r) => r?.moreg_factor != null);
  const left = 52, right = w - 40;
  const top = 50 + (warnLines ? warnLines * LINE_H + 1 : 0); // room for the warnings
  const xAxis = h - 28;
  const whatifStrip = xAxis - 14;
  const runStrip = whatifStrip - 12;
  const factorBottom = runStrip - 6;
  const factorTop = withFactor ? factorBottom - 26 : factorBottom;
  const bottom = factorTop - (withFactor ? 8 : 4);
  const n = Math.max(st.nSteps, 1);
  const colW = (right - left) / n;
  return { left, right, top, bottom, factorTop, factorBottom, runStrip, whatifStrip, xAxis, colW,
    withFactor, x: (t) => left + (t + 0.5) * colW };
}

// Each warning wrapped to `width`: [{text, index}] lines, the first of each marked ⚠.
function wrapWarnings(ctx, warnings, width) {
  const lines = [];
  warnings.forEach((warning, index) => {
    let line = "⚠";
    for (const word of String(warning).split(/\s+/)) {
      const next = `${line} ${word}`;
      if (ctx.measureText(next).width > width && line.trim() !== "⚠" && line.trim()) {
        lines.push({ text: line, index });
        line = `   ${word}`;
      } else {
        line = next;
      }
    }
    lines.push({ text: line, index });
  });
  return lines;
}

function drawPlot(ctx, w, h, node, warnings = [], short = false) {
  const st = stateOf(node);
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "alphabetic";
  if (!st.nSteps) {
    ctx.fillStyle = COLORS.dim;
    ctx.fillText("Queue a run: each step appears here as it is sampled.", 8, 13);
    ctx.fillText("A calibration trace (every step computed) makes the what-if exact.", 8, 26);
    return null;
  }
  if (short) { // folded: the header only
    ctx.fillStyle = COLORS.text;
    const lines = headerText(st);
    if (warnings.length) lines[0] += ` · ⚠ ${st.summary.warnings.length} (unfold to read)`;
    lines.forEach((line, i) => ctx.fillText(line, 8, 13 + LINE_H * i, w - 12));
    return null;
  }
  if (st.stale || st.notRerun) ctx.globalAlpha = 0.35;
  const L = layoutOf(w, h, st, warnings.length);
  const cb = codebookOf(st);
  const lines = cb ? cb.thresholds.slice(0, -1) : [];
  const shown = st.records.map((r) => r?.distance ?? null);
  // A calibrated plan compares c_t with the model's expected change at that step (its
  // profile), not with thresholds: that line is drawn, the thresholds only faintly.
  const planned = !st.whatif && !!st.codebook?.planned;
  const expected = planned ? st.records.map((r) => r?.reference_distance ?? null) : [];
  // MoReg-regularised distances can be 100x the raw ones: they are drawn clamped to the plot
  // and never set its range (the factor has its own lane below).
  const Y = st.frozenY ?? yScale([...shown, ...lines, ...expected], L.top, L.bottom);
  L.Y = Y;

  // header: progress, or the finished run's numbers
  ctx.fillStyle = COLORS.text;
  headerText(st).forEach((line, i) => ctx.fillText(line, 8, 13 + 13 * i));
  // After a calibrated plan's run the node shows one schedule, the one that ran: the plan picks
  // rates from the model's change profile, not from thresholds, so a what-if of its thresholds
  // appears only once the artist edits them. The server answers it (whatif.js); until then the
  // node shows the run alone.
  const asked = cb && !planned && !st.summary?.interrupted
    ? predictionFor(st, st.summary, cb, () => redrawApply(node)) : null;
  L.whatifPending = asked === undefined;
  const prediction = asked ?? null;
  L.prediction = st.prediction = prediction;
  if (prediction) {
    ctx.fillStyle = COLORS.whatif;
    const edited = st.whatif && !sameCodebook(st.whatif, st.codebook);
    // Exact only where every step's own distance was recorded (calibration, gap 1) and no
    // MoReg factor depends on the schedule's gaps.
    const exact = st.calibration && !st.moreg && !prediction.approximate;
    ctx.fillText(
      `${edited ? "what-if codebook" : planned ? "thresholds of this plan" : "this codebook"}: ` +
        "block stack would run " +
        `${prediction.computed.length}/${st.nSteps} · ` +
        (exact ? "exact on this calibration trace" : st.calibration
          ? "approx. (MoReg depends on the schedule)" : "approx. (needs a calibration trace)"),
      8, 39);
  }

  // grid and y axis
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = COLORS.dim;
  ctx.textAlign = "right";
  for (const v of Y.ticks) {
    const py = Math.round(Y.y(v)) + 0.5;
    if (py < L.top - 1 || py > L.bottom + 1) continue;
    ctx.beginPath();
    ctx.moveTo(L.left, py);
    ctx.lineTo(L.right, py);
    ctx.stroke();
    ctx.fillText(fmt(v, 2), L.left - 4, py + 3);
  }
  ctx.save();
  ctx.translate(10, (L.top + L.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(`distance c_t${Y.log ? " (log)" : ""}`, 0, 0);
  ctx.restore();

  // thresholds with each band's rate
  ctx.textAlign = "left";
  const alpha = ctx.globalAlpha;
  if (planned) ctx.globalAlpha = alpha * 0.4;
  if (cb) {
    lines.forEach((t, i) => {
      const py = Y.y(t);
      ctx.strokeStyle = COLORS.thresholds[i % COLORS.thresholds.length];
      ctx.setLineDash([5, 3]);
      ctx.lineWidth = st.hover?.line === i ? 2.5 : 1.2;
      ctx.beginPath();
      ctx.moveTo(L.left, py);
      ctx.lineTo(L.right + 4, py);
      ctx.stroke();
      ctx.setLineDash([]);
    });
    // band k (rate cb.rates[k]) spans thresholds[k-1]..thresholds[k] (bands drawn bottom-up)
    L.bands = [];
    for (let k = 0; k < cb.rates.length; k++) {
      const yLow = k === 0 ? L.bottom : Y.y(lines[k - 1]);
      const yHigh = k === lines.length ? L.top : Y.y(lines[k]);
      const y0 = Math.max(Math.min(yLow, L.bottom), L.top);
      const y1 = Math.max(Math.min(yHigh, L.bottom), L.top);
      if (y0 - y1 < 9) continue;
      const cy = (y0 + y1) / 2 + 4;
      ctx.fillStyle = k < lines.length ? COLORS.thresholds[k % COLORS.thresholds.length] : COLORS.dim;
      ctx.fillText(`τ=${cb.rates[k]}`, L.right + 6, cy);
      L.bands.push({ k, x0: L.right + 2, x1: w, y0: cy - 11, y1: cy + 4 });
    }
  }
  ctx.globalAlpha = alpha;
  if (planned) {
    const refs = [];
    expected.forEach((v, t) => { if (v != null) refs.push([L.x(t), Y.y(v)]); });
    ctx.strokeStyle = COLORS.text;
    ctx.setLineDash([2, 2]);
    ctx.beginPath();
    refs.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLORS.dim;
    ctx.fillText("┄ white: the plan's expected change (above it: shorter gaps)", L.left + 4,
      L.top + 10);
  }

  // raw distance at compute steps (and regularised, with MoReg)
  const pts = [];
  st.records.forEach((r, t) => {
    if (r?.distance != null) pts.push([L.x(t), Y.y(r.distance)]);
  });
  ctx.strokeStyle = COLORS.distance;
  ctx.lineWidth = 1;
  ctx.beginPath();
  pts.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
  ctx.stroke();
  ctx.fillStyle = COLORS.distance;
  for (const [px, py] of pts) {
    ctx.beginPath();
    ctx.arc(px, py, 2.8, 0, 2 * Math.PI);
    ctx.fill();
  }
  if (st.moreg) {
    ctx.strokeStyle = COLORS.regularized;
    st.records.forEach((r, t) => {
      const v = r?.regularized_distance;
      if (v == null || r.distance == null) return;
      const py = Y.y(v);
      if (py < L.top) {
        ctx.beginPath(); // above the plot: an arrow at its top edge
        ctx.moveTo(L.x(t) - 3, L.top + 4);
        ctx.lineTo(L.x(t), L.top - 1);
        ctx.lineTo(L.x(t) + 3, L.top + 4);
        ctx.stroke();
      } else {
        ctx.strokeRect(L.x(t) - 2.5, Math.min(py, L.bottom) - 2.5, 5, 5);
      }
    });
  }

  // MoReg factor, its own series on its own log lane
  if (L.withFactor) {
    const fs = st.records.map((r) => r?.moreg_factor ?? null);
    const pos = fs.filter((f) => f !== null && f > 0);
    ctx.fillStyle = COLORS.dim;
    ctx.textAlign = "right";
    ctx.fillText("MoReg ×", L.left - 4, L.factorBottom - 8);
    ctx.textAlign = "left";
    if (pos.length) {
      const lo = Math.min(...pos, 0.5), hi = Math.max(...pos, 2);
      const fy = (f) => L.factorBottom - ((Math.log(f) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) *
        (L.factorBottom - L.factorTop);
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(L.left, Math.round(fy(1)) + 0.5);
      ctx.lineTo(L.right, Math.round(fy(1)) + 0.5);
      ctx.stroke();
      ctx.fillStyle = COLORS.factor;
      fs.forEach((f, t) => {
        if (f === null || f <= 0) return;
        ctx.fillRect(L.x(t) - 2, fy(f) - 2, 4, 4);
      });
      ctx.fillStyle = COLORS.dim;
      ctx.fillText(`≤${fmt(Math.max(...pos), 2)}×`, L.right + 4, L.factorBottom - 8, w - L.right - 5);
    }
  }

  // strips: what the run did, and what the codebook shown would do
  const gap = L.colW > 4 ? 1 : 0;
  st.records.forEach((r, t) => {
    ctx.fillStyle = r?.computed === true ? COLORS.computed : r?.computed === false ? COLORS.reused
      : COLORS.unreached;
    ctx.fillRect(L.left + t * L.colW + gap / 2, L.runStrip, Math.max(L.colW - gap, 1), 9);
  });
  for (let t = st.records.length; t < st.nSteps; t++) {
    ctx.fillStyle = COLORS.unreached;
    ctx.fillRect(L.left + t * L.colW + gap / 2, L.runStrip, Math.max(L.colW - gap, 1), 9);
  }
  if (prediction) {
    const set = new Set(prediction.computed);
    for (let t = 0; t < st.nSteps; t++) {
      ctx.fillStyle = set.has(t) ? COLORS.whatif : COLORS.reused;
      ctx.fillRect(L.left + t * L.colW + gap / 2, L.whatifStrip, Math.max(L.colW - gap, 1), 9);
    }
  }
  ctx.fillStyle = COLORS.dim;
  ctx.textAlign = "right";
  ctx.fillText("run", L.left - 4, L.runStrip + 8);
  if (prediction) ctx.fillText("what-if", L.left - 4, L.whatifStrip + 8);
  ctx.textAlign = "left";

  // x axis: step numbers (1-based, as the sampler's progress bar counts)
  ctx.textAlign = "center";
  const every = [1, 2, 5, 10, 20, 50, 100].find((e) => (L.colW * e) >= 22) ?? 100;
  for (let t = 0; t < st.nSteps; t++) {
    if ((t + 1) % every && !(t === 0 && every > 2)) continue;
    ctx.fillText(String(t + 1), L.x(t), L.xAxis + 10);
  }
  ctx.textAlign = "left";
  if (!st.summary && !st.stale && st.nextCompute != null && st.nextCompute < st.nSteps) {
    const nx = L.x(st.nextCompute); // live: where the block stack runs next
    ctx.strokeStyle = COLORS.computed;
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(nx, L.top);
    ctx.lineTo(nx, L.runStrip + 9);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLORS.computed;
    ctx.textAlign = "center";
    ctx.fillText("next", nx, L.top - 2);
    ctx.textAlign = "left";
  }
  drawLegend(ctx, 8, h - 5, st.moreg);
  if (st.hover?.step != null) {
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.strokeRect(L.left + st.hover.step * L.colW, L.top, L.colW, L.whatifStrip + 9 - L.top);
  }
  ctx.globalAlpha = 1;
  // the warnings in full, wrapped; hovering one shows it in the tooltip
  ctx.fillStyle = COLORS.warn;
  L.warnings = warnings.map(({ text, index }, i) => {
    const y = 52 + LINE_H * i;
    ctx.fillText(text, 8, y);
    return { index, y0: y - 10, y1: y + 3, width: ctx.measureText(text).width };
  });
  return L;
}

function drawLegend(ctx, x, y, moreg) {
  const items = [
    [COLORS.distance, "●", "c_t (raw)"],
    ...(moreg ? [[COLORS.regularized, "□", "c_t × MoReg (compared)"]] : []),
    [COLORS.thresholds[0], "┄", "threshold, τ = rate"],
    [COLORS.computed, "■", "computed"],
    [COLORS.reused, "■", "reused"],
  ];
  for (const [color, mark, label] of items) {
    ctx.fillStyle = color;
    ctx.fillText(mark, x, y);
    x += ctx.measureText(mark).width + 3;
    ctx.fillStyle = COLORS.dim;
    ctx.fillText(label, x, y);
    x += ctx.measureText(label).width + 10;
  }
}

function headerText(st) {
  if (st.stale) return ["earlier run (greyed)", "waiting for this prompt's first step…"];
  if (st.notRerun) return ["earlier run: this prompt did not sample it again",
    "(ComfyUI reused the cached result, or the sampler did not run)"];
  const s = st.summary;
  if (!s) {
    return [st.text || "sampling…",
      st.calibration ? "calibration run: every step computed" : "live: each step appears as it finishes"];
  }
  if (s.interrupted) {
    return [`interrupted at step ${s.steps_reached} of ${s.steps} · block stack ran ` +
      `${s.computed_steps}`, "a partial run: no estimate, no advice, nothing recorded"];
  }
  const t = s.timing ?? {};
  return [
    `block stack ran ${s.computed_steps}/${s.steps_reached} steps` +
      `${s.moreg ? " · MoReg on" : ""}${st.calibration ? " · calibration run" : ""}`,
    st.calibration ? "every step computed: full quality (the output of an uncached run)"
      : t.speedup_text ? `wall-clock ${t.speedup_text} faster than computing every step ` +
        "(this run's step times)"
        : `wall-clock speedup: not estimated (${t.speedup_note ?? "no timings"})`,
  ];
}

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

function addPlotWidget(node) {
  const box = document.createElement("div");
  box.className = "adacache-plot";
  Object.assign(box.style, { display: "flex", flexDirection: "column", width: "100%" });
  const canvas = document.createElement("canvas");
  canvas.className = "adacache-adacache_schedule";
  Object.assign(canvas.style, { width: "100%", height: `${SHORT_H}px`, touchAction: "none" });
  const bar = document.createElement("div");
  Object.assign(bar.style, { display: "flex", gap: "6px", height: `${BAR_H - 4}px`,
    alignItems: "center", font: "11px sans-serif", color: COLORS.dim, marginTop: "2px" });
  const button = (label, title) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    Object.assign(b.style, { font: "11px sans-serif", padding: "1px 8px", cursor: "pointer",
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
  hint.textContent = "drag a threshold · click τ: +1, shift-click: −1";
  hint.style.whiteSpace = "nowrap";
  hint.style.overflow = "hidden";
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
    const warnings = st.summary && !st.stale && !st.notRerun
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
      // a calibrated plan: compute steps drawn against the plan's expected change
      expected: String(st.codebook?.planned && !st.whatif
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

function redrawApply(node) {
  widget(node, "adacache_schedule")?.redraw?.();
}

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
    const planned = stateOf(apply).codebook?.planned;
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
  const feedsCalibrate = (apply.outputs ?? []).some((o) => (o.links ?? []).some((id) =>
    graph.getNodeById(linkById(graph, id)?.target_id)?.type === "AdaCacheCalibrate"));
  if (!(widget(apply, "preset")?.value === "calibrate" && feedsCalibrate)) {
    setWidget(apply, "preset", "custom");
  }
  graph.setDirtyCanvas?.(true, true);
  app.graph.setDirtyCanvas?.(true, true);
  return editor;
}

// --- Codebook Editor: picking a saved codebook shows its values --------------------------------
async function savedCodebooks() {
  try {
    const res = await api.fetchApi("/adacache/codebooks");
    if (!res.ok) return [];
    return (await res.json()).codebooks ?? [];
  } catch {
    return [];
  }
}

function setupEditor(node) {
  const saved = widget(node, "saved");
  if (!saved) return;
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

async function refreshSavedOptions() {
  const editors = allNodes().filter((n) => n.type === EDITOR);
  if (!editors.length) return;
  const books = await savedCodebooks();
  if (!books.length) return;
  for (const n of editors) {
    const w = widget(n, "saved");
    if (w?.options) w.options.values = [USE_ABOVE, ...books.map((b) => b.name)];
  }
}

// --- events ------------------------------------------------------------------------------------
const ourPrompts = new Set(); // prompts this client queued (the server sends their events here)

function applyNodeFor(detail) {
  if (detail?.prompt_id && ourPrompts.size && !ourPrompts.has(detail.prompt_id)) return null;
  const node = nodeForId(detail?.node);
  return node?.type === APPLY || node?.comfyClass === APPLY ? node : null;
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
    const st = n.type === APPLY ? stateOf(n) : null;
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
    if (n.type !== APPLY) continue;
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
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === APPLY) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        addPlotWidget(this);
        this.size[0] = Math.max(this.size[0], 440); // room for the plot's axes and labels
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
