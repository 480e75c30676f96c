// AdaCache frontend: a per-run schedule plot on "AdaCache Apply" and a live codebook editor
// on "AdaCache Codebook Editor". Plain ES module; DOM <canvas> widgets (serialize: false), so
// nothing visual lands in the prompt: the codebook editor writes its choices back into the
// real "rates" text widget, which is what the backend reads and what the workflow saves.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const APPLY = "AdaCacheApply";
const EDITOR = "AdaCacheCodebookEditor";
const COLORS = {
  computed: "#4caf50",
  reused: "#5a5a5a",
  distance: "#64b5f6",
  factor: "#ffb74d",
  text: "#dddddd",
  warn: "#ff8a65",
  band: ["#1e3a5f", "#24466f", "#2a527f", "#305e8f", "#366a9f", "#3c76af"],
};
const latestByNode = new Map(); // node id -> last trace summary
let latestTrace = null; // the most recent summary of any AdaCache Apply (for the editor)

// A node by its execution id; subgraph ids look like "12:7:5".
function nodeForId(id) {
  const parts = String(id).split(":");
  let graph = app.graph;
  let node = null;
  for (const part of parts) {
    node = graph?.getNodeById?.(Number(part)) ?? graph?.getNodeById?.(part);
    if (!node) return null;
    graph = node.subgraph ?? graph;
  }
  return node;
}

function addCanvasWidget(node, name, height, draw) {
  const canvas = document.createElement("canvas");
  canvas.className = `adacache-${name}`;
  canvas.style.width = "100%";
  canvas.style.height = `${height}px`;
  const widget = node.addDOMWidget(name, "adacache-canvas", canvas, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => height + 6,
  });
  const redraw = () => {
    const w = canvas.clientWidth || 300;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.floor(w * ratio));
    canvas.height = Math.floor(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, height);
    draw(ctx, w, height);
  };
  const observer = new ResizeObserver(redraw);
  observer.observe(canvas);
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    observer.disconnect();
    return onRemoved?.apply(this, arguments);
  };
  widget.redraw = redraw;
  widget.canvas = canvas;
  return widget;
}

// --- AdaCache Apply: what the last run did ---------------------------------------------------
function drawSchedule(ctx, w, h, summary) {
  ctx.font = "11px sans-serif";
  ctx.fillStyle = COLORS.text;
  if (!summary) {
    ctx.fillText("Queue a run to see which steps AdaCache computed.", 6, 16);
    return;
  }
  const trace = summary.trace.filter((r) => r.computed !== null);
  const n = Math.max(trace.length, 1);
  const left = 6, right = w - 6, top = 20, strip = 12, plotH = h - top - strip - 26;
  const step = (right - left) / n;
  const values = trace.map((r) => r.regularized_distance ?? r.distance ?? 0);
  const maxV = Math.max(...values, 1e-9);
  ctx.fillText(
    `computed ${summary.computed_steps}/${summary.steps_reached} steps · ` +
      `${summary.estimated_speedup.toFixed(2)}x fewer · MoReg ${summary.moreg ? "on" : "off"}`,
    left, 13,
  );
  trace.forEach((r, i) => {
    const x = left + i * step;
    const v = values[i];
    if (r.distance !== null) {
      const bh = (v / maxV) * plotH;
      ctx.fillStyle = COLORS.distance;
      ctx.fillRect(x + 1, top + plotH - bh, Math.max(step - 2, 1), bh);
      if (r.rate !== null && step > 9) {
        ctx.fillStyle = COLORS.text;
        ctx.fillText(String(r.rate), x + step / 2 - 3, top + plotH - bh - 2);
      }
    }
    if (r.moreg_factor !== null && r.moreg_factor !== 1) {
      ctx.fillStyle = COLORS.factor;
      ctx.fillRect(x + step / 2 - 1, top + plotH - 3, 2, 3);
    }
    ctx.fillStyle = r.computed ? COLORS.computed : COLORS.reused;
    ctx.fillRect(x + 0.5, top + plotH + 4, Math.max(step - 1, 1), strip);
  });
  ctx.fillStyle = COLORS.text;
  ctx.fillText("bars: distance per step (number: cache rate) · strip: green computed, grey reused",
    left, h - 8);
  if (summary.warnings?.length) {
    ctx.fillStyle = COLORS.warn;
    ctx.fillText(`⚠ ${summary.warnings[0]}`.slice(0, Math.floor(w / 5.5)), left, top + 10);
  }
}

// --- Codebook Editor: thresholds as bands, click a band to change its rate -------------------
function parseList(text) {
  return String(text ?? "").split(/[,;]/).map((s) => s.trim()).filter((s) => s.length);
}

function bandsOf(node) {
  const thresholds = parseList(node.widgets?.find((w) => w.name === "thresholds")?.value)
    .map(Number);
  const rates = parseList(node.widgets?.find((w) => w.name === "rates")?.value).map(Number);
  return { thresholds, rates, ok: thresholds.length && thresholds.length === rates.length };
}

function bandLayout(thresholds, w) {
  const left = 6, right = w - 6;
  const width = (right - left) / thresholds.length;
  return thresholds.map((t, i) => ({ x0: left + i * width, x1: left + (i + 1) * width }));
}

function drawCodebook(ctx, w, h, node) {
  ctx.font = "11px sans-serif";
  const { thresholds, rates, ok } = bandsOf(node);
  if (!ok) {
    ctx.fillStyle = COLORS.warn;
    ctx.fillText("thresholds and rates need the same number of entries", 6, 16);
    return;
  }
  const bands = bandLayout(thresholds, w);
  const maxRate = Math.max(...rates, 1);
  const top = 34; // legend line and the row of last-run distances above the bars
  bands.forEach((b, i) => {
    const bh = ((rates[i] || 0) / maxRate) * (h - top - 36);
    ctx.fillStyle = COLORS.band[i % COLORS.band.length];
    ctx.fillRect(b.x0 + 1, h - 22 - bh, b.x1 - b.x0 - 2, bh);
    ctx.fillStyle = COLORS.text;
    ctx.fillText(`τ=${rates[i]}`, b.x0 + 4, h - 26 - bh);
    const label = i === thresholds.length - 1 ? "rest" : `<${thresholds[i]}`;
    ctx.fillText(label, b.x0 + 4, h - 8);
  });
  // Distances of the last run, placed in the band they fall into.
  const distances = (latestTrace?.trace ?? [])
    .map((r) => r.regularized_distance ?? r.distance)
    .filter((d) => d !== null && d !== undefined);
  distances.forEach((d, k) => {
    let i = thresholds.findIndex((t, j) => j < thresholds.length - 1 && d < t);
    if (i < 0) i = thresholds.length - 1;
    const b = bands[i];
    const x = b.x0 + 4 + ((k * 7) % Math.max(b.x1 - b.x0 - 8, 1));
    ctx.fillStyle = COLORS.factor;
    ctx.beginPath();
    ctx.arc(x, 24, 2.5, 0, 2 * Math.PI);
    ctx.fill();
  });
  ctx.fillStyle = COLORS.text;
  ctx.fillText(distances.length ? "dots: last run's distances · click a band: rate ±1" :
    "click a band: rate +1 (shift-click: -1)", 6, 11);
}

function setRate(node, index, delta) {
  const { rates, ok } = bandsOf(node);
  if (!ok || index < 0 || index >= rates.length) return;
  rates[index] = Math.max(1, Math.round(rates[index] + delta));
  const widget = node.widgets.find((w) => w.name === "rates");
  widget.value = rates.join(", ");
  widget.callback?.(widget.value);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "adacache.widgets",
  async setup() {
    api.addEventListener("adacache.trace", ({ detail }) => {
      latestTrace = detail;
      latestByNode.set(String(detail.node), detail);
      const widget = nodeForId(detail.node)?.widgets?.find((w) => w.name === "adacache_schedule");
      if (widget) {
        widget.canvas.dataset.pattern = detail.pattern; // readable by people's tools and tests
        widget.redraw();
      }
      for (const n of app.graph?._nodes ?? []) {
        if (n.type === EDITOR) n.widgets?.find((w) => w.name === "adacache_codebook")?.redraw();
      }
    });
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === APPLY) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        const node = this;
        addCanvasWidget(node, "adacache_schedule", 120, (ctx, w, h) =>
          drawSchedule(ctx, w, h, latestByNode.get(String(node.id))));
        return r;
      };
    }
    if (nodeData.name === EDITOR) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        const node = this;
        const widget = addCanvasWidget(node, "adacache_codebook", 130, (ctx, w, h) =>
          drawCodebook(ctx, w, h, node));
        widget.canvas.addEventListener("pointerdown", (e) => {
          const { thresholds } = bandsOf(node);
          const rect = widget.canvas.getBoundingClientRect();
          const x = ((e.clientX - rect.left) / rect.width) * widget.canvas.clientWidth;
          const i = bandLayout(thresholds, widget.canvas.clientWidth)
            .findIndex((b) => x >= b.x0 && x < b.x1);
          setRate(node, i, e.shiftKey ? -1 : 1);
          widget.redraw();
          e.stopPropagation();
        });
        for (const name of ["thresholds", "rates"]) {
          const w = node.widgets?.find((x) => x.name === name);
          if (!w) continue;
          const cb = w.callback;
          w.callback = function () {
            const out = cb?.apply(this, arguments);
            widget.redraw();
            return out;
          };
        }
        return r;
      };
    }
  },
});
