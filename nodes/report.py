"""AdaCache Report: the last sampling run's trace as an IMAGE (the plot) and a STRING summary.

The plot is drawn with Pillow (a ComfyUI requirement): the raw per-step distance at compute
steps on a labelled axis (log scale when the range needs it), the codebook's thresholds as
horizontal lines with each band's cache rate (after a calibrated plan's run: the plan's expected
change instead), the MoReg factor as its own panel, and the computed/reused strip.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from comfy_api.latest import io, ui
from PIL import Image, ImageDraw, ImageFont

from ..adacache import CalibratedPlan, format_summary
from .patch import check_model

log = logging.getLogger("AdaCache")
WIDTH, HEIGHT = 1024, 640
BG, FG, GRID = (255, 255, 255), (30, 30, 30), (225, 225, 225)
# One colour code with the AdaCache Apply plot: web/colors.json (the widget reads it too).
SHARED = json.loads((Path(__file__).resolve().parents[1] / "web" / "colors.json").read_text())


def _rgb(name: str) -> tuple[int, int, int]:
    value = SHARED[name].lstrip("#")
    return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))


COMPUTED, REUSED, BLUE, ORANGE, THRESHOLD, RED = (
    _rgb(k) for k in ("computed", "reused", "distance", "factor", "threshold", "warn"))
GREY = REUSED


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _nice(v: float) -> str:
    return f"{v:.3g}" if v < 1000 else f"{v:.0f}"


class _Axis:
    """A value -> pixel mapping, linear or log10."""

    def __init__(self, lo: float, hi: float, top: int, bottom: int, log_scale: bool):
        self.log = log_scale
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.08
        self.lo, self.hi, self.top, self.bottom = lo - pad, hi + pad, top, bottom

    def y(self, v: float) -> float:
        v = math.log10(max(v, 1e-30)) if self.log else v
        return self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def contains(self, v: float) -> bool:
        return self.top <= self.y(v) <= self.bottom

    def ticks(self) -> list[float]:
        if self.log:
            return [10.0**e for e in range(math.floor(self.lo), math.ceil(self.hi) + 1)
                    if self.lo <= e <= self.hi] or [10 ** ((self.lo + self.hi) / 2)]
        span = self.hi - self.lo
        step = 10 ** math.floor(math.log10(span / 4))
        for m in (1, 2, 5, 10):
            if span / (step * m) <= 6:
                step *= m
                break
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)]


def render_report(summary: dict, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """The trace plot of one run summary (``AdaCacheRun.summary()``) as an RGB image."""
    im = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(im)
    f_title, f_label, f_small = _font(17), _font(14), _font(12)
    trace = [r for r in summary.get("trace", []) if r.get("computed") is not None]
    n = int(summary.get("steps") or len(summary.get("trace", [])) or 1)
    computed = summary.get("computed_steps", sum(1 for r in trace if r.get("computed")))
    reached = summary.get("steps_reached", len(trace))
    title = (f"AdaCache [{summary.get('family', '?')}]  block stack ran {computed}/{reached} "
             f"steps" + (" (calibration run: every step computed)"
                         if summary.get("calibration") else ""))
    d.text((16, 10), title, fill=FG, font=f_title)
    moreg = "on" if summary.get("moreg") else "off"
    values = summary.get("codebook_values") or {}
    planned = values.get("kind") == CalibratedPlan.KIND  # typed: what picked the rates
    rule = (f"calibrated plan for {values.get('speed', 0):g}x fewer block-stack steps" if planned
            else f"codebook {summary.get('codebook', '?')}")
    sub = f"{rule}  ·  MoReg {moreg}"
    shown = (summary.get("timing") or {}).get("speedup_text")  # only where timings support it
    if shown:
        sub += f"  ·  wall-clock {shown} (estimated from this run's timings)"
    if summary.get("interrupted"):
        sub += "  ·  interrupted"
    d.text((16, 34), sub, fill=FG, font=f_small)

    left, right = 90, width - 110
    dist_top, dist_bottom = 76, int(height * 0.60)
    fac_top, fac_bottom = dist_bottom + 30, int(height * 0.80)
    strip_top, strip_bottom = fac_bottom + 26, fac_bottom + 46

    def x(step: float) -> float:
        return left + (step + 0.5) / n * (right - left)

    distances = [(r["step"], _finite(r.get("distance"))) for r in trace]
    distances = [(s, v) for s, v in distances if v is not None and v > 0]
    thresholds = [_finite(t) for t in values.get("thresholds") or []]
    rates = list(values.get("rates") or [])
    references = [(r["step"], _finite(r.get("reference_distance"))) for r in trace]
    references = [(s, v) for s, v in references if v is not None and v > 0]
    if summary.get("calibration") or planned:
        # every step computed, or a calibrated plan (rate from the distance against the
        # plan's expected change, drawn instead): the thresholds did not pick the rates
        thresholds, rates = [], []
    values = [v for _, v in distances] + [v for _, v in references]
    if values:
        lo, hi = min(values), max(values)
        # show thresholds near the data (the last one only catches the rest)
        near = [t for t in thresholds[:-1] if t is not None and lo / 20 <= t <= hi * 20]
        lo, hi = min([lo, *near]), max([hi, *near])
        log_scale = hi / lo > 20
        axis = _Axis(lo, hi, dist_top, dist_bottom, log_scale)
        for t in axis.ticks():
            y = axis.y(t)
            if dist_top <= y <= dist_bottom:
                d.line([(left, y), (right, y)], fill=GRID)
                d.text((left - 8, y), _nice(t), fill=FG, font=f_small, anchor="rm")
        # thresholds: band i (distance below threshold i) -> rate i
        previous_y = dist_bottom
        for i, t in enumerate(thresholds[:-1]):
            if t is None or not axis.contains(t):
                continue
            y = axis.y(t)
            _dashed(d, left, right, y, THRESHOLD)
            rate = rates[i] if i < len(rates) else "?"
            d.text((right + 6, (y + previous_y) / 2), f"< {_nice(t)}: rate {rate}",
                   fill=THRESHOLD, font=f_small, anchor="lm")
            previous_y = y
        if rates:
            d.text((right + 6, max(dist_top + 6, previous_y - 12)), f"above: rate {rates[-1]}",
                   fill=THRESHOLD, font=f_small, anchor="lm")
        ref = [(x(s), axis.y(v)) for s, v in references]
        if len(ref) > 1:
            d.line(ref, fill=GREY, width=1)
        for px, py in ref:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], outline=GREY)
        if ref:
            d.text((right + 6, dist_top + 6), "grey: the plan's", fill=GREY, font=f_small,
                   anchor="lm")
            d.text((right + 6, dist_top + 22), "expected change", fill=GREY, font=f_small,
                   anchor="lm")
        pts = [(x(s), axis.y(v)) for s, v in distances]
        if len(pts) > 1:
            d.line(pts, fill=BLUE, width=2)
        for px, py in pts:
            d.ellipse([px - 3.5, py - 3.5, px + 3.5, py + 3.5], fill=BLUE)
        ylabel = "distance c_t per step" + (" (log)" if log_scale else "")
    else:
        d.text(((left + right) / 2, (dist_top + dist_bottom) / 2),
               "no distance measured in this run", fill=GREY, font=f_label, anchor="mm")
        ylabel = "distance c_t per step"
    d.rectangle([left, dist_top, right, dist_bottom], outline=FG)
    d.text((16, dist_top - 18), ylabel, fill=BLUE, font=f_small)

    # MoReg factor, its own panel (never folded into the distance)
    factors = [(r["step"], _finite(r.get("moreg_factor"))) for r in trace]
    factors = [(s, v) for s, v in factors if v is not None]
    d.rectangle([left, fac_top, right, fac_bottom], outline=FG)
    d.text((16, fac_top - 18), "MoReg factor (distance x factor picks the rate)", fill=ORANGE,
           font=f_small)
    if factors:
        fl, fh = min(v for _, v in factors), max(v for _, v in factors)
        fl, fh = min(fl, 1.0), max(fh, 1.0)
        flog = fl > 0 and fh / fl > 20
        faxis = _Axis(fl, fh, fac_top, fac_bottom, flog)
        for t in (fl, 1.0, fh):
            d.text((left - 8, faxis.y(t)), _nice(t), fill=FG, font=f_small, anchor="rm")
        _dashed(d, left, right, faxis.y(1.0), GRID)
        pts = [(x(s), faxis.y(v)) for s, v in factors]
        if len(pts) > 1:
            d.line(pts, fill=ORANGE, width=2)
        for px, py in pts:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=ORANGE)
    else:
        d.text(((left + right) / 2, (fac_top + fac_bottom) / 2), "MoReg off", fill=GREY,
               font=f_small, anchor="mm")

    # computed / reused strip and the step axis
    by_step = {r["step"]: r.get("computed") for r in summary.get("trace", [])}
    for s in range(n):
        c = by_step.get(s)
        color = COMPUTED if c else (REUSED if c is False else BG)
        d.rectangle([x(s - 0.5) + 1, strip_top, x(s + 0.5) - 1, strip_bottom], fill=color,
                    outline=GREY)
    d.text((16, strip_top + 2), "computed", fill=COMPUTED, font=f_small)
    every = max(1, math.ceil(n / 15))
    for s in range(0, n, every):
        d.line([(x(s), strip_bottom), (x(s), strip_bottom + 4)], fill=FG)
        d.text((x(s), strip_bottom + 6), str(s), fill=FG, font=f_small, anchor="mt")
    d.text(((left + right) / 2, strip_bottom + 24), "sampling step  (green: block stack ran, "
           "grey: reused)", fill=FG, font=f_small, anchor="mt")
    y = strip_bottom + 44
    for w in summary.get("warnings", [])[:3]:
        d.text((16, y), f"warning: {w}"[:150], fill=RED, font=f_small)
        y += 16
    return im


def _dashed(d, x0, x1, y, color, dash=8):
    xs = np.arange(x0, x1, dash * 2)
    for a in xs:
        d.line([(a, y), (min(a + dash, x1), y)], fill=color, width=1)


def image_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> ComfyUI IMAGE [1, H, W, 3] float in 0..1."""
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None]


NO_RUN = "no sampling run of this model yet"
NOT_THIS_LATENT = ("no run of this model produced this latent: connect the LATENT of the sampler "
                   "that uses this AdaCache model")


def last_summary(model) -> dict | None:
    return _handle(model).last_summary


def _handle(model):
    check_model(model, "AdaCache Report")
    handle = model.model_options.get("transformer_options", {}).get("adacache_handle")
    if handle is None:
        raise ValueError(
            "AdaCache Report: 'model' is not patched by AdaCache; connect the MODEL output of "
            "AdaCache Apply (the one the sampler uses)"
        )
    return handle


def check_latent(latent, node: str) -> torch.Tensor:
    """The samples of a LATENT input, or a clear error naming the input."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not (isinstance(samples, torch.Tensor) or getattr(samples, "is_nested", False)):
        raise ValueError(
            f"{node}: 'latent' got {type(latent).__name__} {str(latent)[:60]!r}; connect the "
            "sampler's LATENT output (literal values are not accepted)"
        )
    return samples


def summary_for(model, latent) -> tuple[dict | None, str | None]:
    """(the run summary that produced ``latent``, or None with why)."""
    handle = _handle(model)
    samples = check_latent(latent, "AdaCache Report")
    if handle.last_summary is None:
        return None, NO_RUN
    summary = handle.summary_for(samples)
    if summary is None and getattr(samples, "is_nested", False):
        return handle.last_summary, None  # packed audio+video latents: no fingerprint
    return (summary, None) if summary is not None else (None, NOT_THIS_LATENT)


def jsonable(obj):
    """Summary -> JSON-safe (NaN/inf -> None, tensors -> lists)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def report_output(summary: dict | None, missing: str | None) -> io.NodeOutput:
    """The Report's outputs for a run summary (or None and why there is none)."""
    if summary is None:
        summary = {"warnings": [missing], "trace": []}
        text = f"AdaCache Report: {missing}"
    else:
        try:
            text = format_summary(summary)
        except Exception as e:  # a partial summary (failed reporting): say so, go on
            text = f"AdaCache Report: incomplete run summary ({e})"
    try:
        im = render_report(summary)
    except Exception as e:  # reporting never fails the workflow
        log.warning("AdaCache Report: could not draw the trace: %s", e, exc_info=True)
        im = Image.new("RGB", (WIDTH, HEIGHT), BG)
        ImageDraw.Draw(im).text((16, 16), f"AdaCache Report: could not draw ({e})",
                                fill=RED, font=_font(14))
    image = image_tensor(im)
    preview = ui.PreviewImage(image).as_dict()
    return io.NodeOutput(
        image, text, ui={**preview, "adacache_trace": [jsonable(summary)]}
    )


class AdaCacheReport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheReport",
            display_name="AdaCache Report",
            category="AdaCache",
            description="The last sampling run's AdaCache trace as an image (distance per "
            "step, thresholds with their cache rates, MoReg factor, computed steps) and a text "
            "summary; connect IMAGE to Save Image to keep it.",
            inputs=[
                io.Model.Input("model", tooltip="The MODEL output of AdaCache Apply (the one "
                               "the sampler uses)."),
                io.Latent.Input("latent", tooltip="The sampler's LATENT output: only makes "
                                "this node run after the sampler."),
            ],
            outputs=[
                io.Image.Output(display_name="report", tooltip="The trace plot, 1024x640."),
                io.String.Output(display_name="summary", tooltip="The run summary as in the "
                                 "log, codebooks in the Codebook Editor's form."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, latent) -> io.NodeOutput:
        return report_output(*summary_for(model, latent))


REPORT_NODES = [AdaCacheReport]
