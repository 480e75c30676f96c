"""A run's summary and its log text: what the log, the websocket, the Report and a calibration
read (``run_summary``), and how a plan's setup differs from the run's (``plan_mismatch``)."""

from __future__ import annotations

import math
from collections import Counter

from .codebook import calibrated_codebook, preset_codebook
from .plan import CalibratedPlan
from .schedule import FINAL, OUTSIDE_RANGE, SCHEDULED, WARMUP

# what a plan's setup is compared on, and how each difference is named
SETUP_CHECKS = (
    ("model", "model"), ("fingerprint", "model weights"), ("latent", "latent shape"),
    ("sampler", "sampler"), ("cfg", "cfg"),
)


def plan_mismatch(planned: dict | None, run: dict) -> list[str]:
    """Warnings naming how this run differs from what a plan was calibrated on."""
    if not planned or not run:
        return []
    differences = [
        f"{label} {planned[key]} -> {run[key]}" for key, label in SETUP_CHECKS
        if planned.get(key) is not None and run.get(key) is not None
        and planned[key] != run[key]
    ]
    if not differences:
        return []
    return [
        "this calibrated plan was recorded on another setup (" + "; ".join(differences) + "): "
        "its schedule may not fit; calibrate on this one (preset 'calibrate' + AdaCache "
        "Calibrate)"
    ]


def run_summary(run, interrupted: bool = False) -> dict:
    """What a finished run was, for the log, the browser, the Report and calibration: its
    schedule, trace, codebook or calibrated plan (``codebook_values``, whose ``kind`` says
    which), warnings and advice."""
    s = run.schedule
    reached = [r for r in s.trace if r.computed is not None]
    computed = len(s.computed_steps)
    distances = [r.distance for r in s.trace if r.distance is not None]
    plain = plain_codebook(run.rule)
    rates = plain.rates
    if max(rates) <= 1:  # suggest a codebook that can reuse steps
        rates = preset_codebook("fast", run.schedule_steps).rates
    calibrated = None if interrupted else calibrated_codebook(distances, rates)
    warnings = list(run.warnings)
    if interrupted:  # a partial run: nothing recorded, no advice drawn from it
        warnings = [f"interrupted at step {len(reached)} of {s.n_steps}: this partial run "
                    "recorded nothing and gives no advice"]
    elif not run.calibrating and len(reached) >= 5 and not s.reused_steps:
        warnings.append(_no_reuse_advice(run, plain, reached, distances, calibrated))
    return {
        "family": run.family.name,
        "preset": run.config.preset,
        "calibration": run.calibrating,
        "interrupted": interrupted,
        "mode": run.family.support,
        "steps": s.n_steps,
        "steps_reached": len(reached),
        "computed_steps": computed,
        "reused_steps": len(s.reused_steps),
        "pattern": s.pattern(),
        "estimated_speedup": (len(reached) / computed) if computed else 1.0,
        "stack_runs": run.stack_runs,
        "reused_calls": run.reused_calls,
        "passthrough_calls": run.passthrough_calls,
        "call_reasons": dict(Counter(
            f"{p['mode']}: {p['reason']}" for r in s.trace for p in r.call_plans
        )),
        "codebook": run.rule.describe(),
        "codebook_text": plain.editor_text(),  # as the Codebook Editor takes it
        "codebook_values": run.rule.summary_values(),
        "codebook_steps": round(run.schedule_steps, 2),
        "metric": run.config.metric,
        "metric_blocks": list(run.metric_positions),
        "moreg": run.schedule.regularizer is not None,
        "setup": run.setup or None,
        "peak_cache_bytes": run.peak_cache_bytes,
        "streams": len(run.streams),
        "distance_range": [min(distances), max(distances)] if distances else None,
        "calibrated_codebook": calibrated.editor_text() if calibrated else None,
        "cache_sigma_range": [
            v if math.isfinite(v) else None for v in (s.cache_sigma_high, s.cache_sigma_low)
        ],
        "warnings": warnings,
        "calibration_sample": (
            run.calibration_sample().to_dict() if run.calibrating and not interrupted
            else None
        ),
        "trace": [r.as_dict() for r in s.trace],
        # where the what-if replays the trace (schedule.predict_schedule)
        "sigmas": list(s.sigmas),
        "positions": list(s.positions),
    }


def plain_codebook(rule):
    """The codebook of ``rule``: itself, or the plain codebook a calibrated plan carries."""
    return rule.codebook if isinstance(rule, CalibratedPlan) else rule


def _no_reuse_advice(run, plain, reached, distances, calibrated) -> str:
    """Why no step was reused, and what would change that."""
    middle = [r for r in reached if r.reason not in (WARMUP, FINAL)]
    if not middle:
        return "no step was reused: with so few steps only warm-up and final steps remain"
    if all(r.reason == OUTSIDE_RANGE for r in middle):
        return (
            "no step was reused: start_percent/end_percent "
            f"({run.config.start_percent:g}..{run.config.end_percent:g}) exclude every "
            "step that could be cached; widen that range (0..1 allows every step)"
        )
    if not any(r.reason == SCHEDULED for r in middle):
        reasons = sorted({r.reason for r in middle})
        return f"no step was reused: every cacheable step was computed ({', '.join(reasons)})"
    if not distances:
        return "no step was reused: no distance was measured (was the block stack run?)"
    text = (
        f"no step was reused: every distance ({min(distances):.4g}..{max(distances):.4g} "
        f"per step) selected cache rate 1 in {plain.editor_text()}; pick a faster "
        "preset"
    )
    if calibrated is not None:
        text += f" or a codebook calibrated to this model, e.g. {calibrated.editor_text()}"
    return text + " (preset 'calibrate' + AdaCache Calibrate fit one to your model)"


def format_summary(summary: dict) -> str:
    """The log lines of a run summary; never raises (an incomplete summary says so)."""
    try:
        return _format_summary(summary)
    except (KeyError, TypeError, ValueError) as e:
        warnings = "; ".join(str(w) for w in summary.get("warnings", []))
        return f"AdaCache: incomplete run summary (missing {e}); {warnings}"


def _format_summary(summary: dict) -> str:
    lines = [
        f"AdaCache [{summary['family']}] computed {summary['computed_steps']}/"
        f"{summary['steps_reached']} steps ({summary['estimated_speedup']:.2f}x fewer block-stack "
        f"steps), {rule_text(summary)} for {summary['codebook_steps']:g} steps, "
        f"metric {summary['metric']} @ blocks {summary['metric_blocks']}, "
        f"MoReg {'on' if summary['moreg'] else 'off'}",
        f"AdaCache schedule  [{summary['pattern']}]  (C computed, . reused)",
        f"AdaCache cache memory peak {summary['peak_cache_bytes'] / 2**20:.1f} MiB "
        f"for {summary['streams']} stream(s)",
    ]
    if summary["distance_range"]:
        lo, hi = summary["distance_range"]
        suggestion = summary["calibrated_codebook"]
        lines.append(
            f"AdaCache distances per step ranged {lo:.4g}..{hi:.4g}"
            + (f"; a codebook calibrated to this run (supplement A.2): {suggestion}"
               if suggestion else "")
        )
    lines += [f"AdaCache warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines)


def rule_text(summary: dict) -> str:
    """What picked the rates, from the summary's typed fields: 'codebook ...' or 'calibrated
    plan ...' (the codebook in the form the Codebook Editor takes)."""
    codebook = summary.get("codebook_text") or summary["codebook"]
    values = summary.get("codebook_values") or {}
    if values.get("kind") == CalibratedPlan.KIND:
        return (f"calibrated plan for {values['speed']:g}x fewer block-stack steps "
                f"(its plain codebook, not used: {codebook})")
    return f"codebook {codebook}"


def format_trace(summary: dict) -> str:
    rows = ["step  sigma     mode      reason           distance  motion   factor  rate  calls"]
    for r in summary.get("trace", []):
        if r["computed"] is None:
            continue
        def num(v, fmt="{:.4f}"):
            return fmt.format(v) if v is not None else "-"
        rows.append(
            f"{r['step']:>4}  {r['sigma']:<8.4f}  {'compute' if r['computed'] else 'reuse':<8}  "
            f"{r['reason']:<15}  {num(r['distance']):>8}  {num(r['motion']):>6}  "
            f"{num(r['moreg_factor'], '{:.3f}'):>6}  {num(r['rate'], '{}'):>4}  "
            + _calls_column(r.get("call_plans", []))
        )
    return "\n".join(rows)


def _calls_column(plans: list[dict]) -> str:
    """Each call's plan, repeats counted: 'reuse (cached) x6, compute (stale cache)'."""
    counts = Counter(f"{p['mode']} ({p['reason']})" for p in plans)
    return ", ".join(f"{text} x{n}" if n > 1 else text for text, n in counts.items())
