// AdaCache frontend: drawing an Apply node's plot (distances, thresholds, MoReg factor, the
// computed/reused strip and the server's what-if).
import { COLORS, LINE_H, fmt, isPlan, redrawApply, sameCodebook } from "./common.js";
import { codebookOf, stateOf } from "./state.js";
import { predictionFor } from "./whatif.js";

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
export function wrapWarnings(ctx, warnings, width) {
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

export function drawPlot(ctx, w, h, node, warnings = [], short = false) {
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
  const planned = !st.whatif && isPlan(st.codebook);
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
      `${edited ? "what-if codebook" : isPlan(st.codebook) ? "the plan's plain codebook"
        : "this codebook"}: ` +
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
  drawLegend(ctx, 8, h - 5, st.moreg, planned, w - 8);
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

// After a calibrated plan's run c_t is compared with the plan's expected change, not with
// thresholds (those drawn faintly are its plain codebook's, which the plan does not use).
// It fits ``right``: a narrow node draws it in a smaller font (8 px at least), never clipped.
function drawLegend(ctx, x, y, moreg, plan = false, right = Infinity) {
  const items = [
    [COLORS.distance, "●", "c_t (raw)"],
    ...(moreg ? [[COLORS.regularized, "□", "c_t × MoReg (compared)"]] : []),
    plan ? [COLORS.text, "┄", "plan's expected c_t"]
      : [COLORS.thresholds[0], "┄", "threshold, τ = rate"],
    [COLORS.computed, "■", "computed"],
    [COLORS.reused, "■", "reused"],
  ];
  const font = ctx.font;
  const gaps = 13 * items.length - 10; // the fixed space after each mark and label
  const text = items.reduce((sum, [, mark, label]) =>
    sum + ctx.measureText(mark).width + ctx.measureText(label).width, 0);
  if (x + text + gaps > right) {
    const size = (parseFloat(font) || 11) * (right - x - gaps) / text;
    ctx.font = `${Math.max(8, Math.floor(size * 10) / 10)}px sans-serif`;
  }
  for (const [color, mark, label] of items) {
    ctx.fillStyle = color;
    ctx.fillText(mark, x, y);
    x += ctx.measureText(mark).width + 3;
    ctx.fillStyle = COLORS.dim;
    ctx.fillText(label, x, y);
    x += ctx.measureText(label).width + 10;
  }
  ctx.font = font;
}

export function headerText(st) {
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
