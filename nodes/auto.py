"""The "auto" presets (ours): speed with no setup.

Per sampling call: when calibration runs of the same model (class and weights fingerprint) and
setup (latent size, sampler, cfg) are stored, the run uses a calibrated plan fitted to them at
the preset's speed; otherwise it calibrates: every step is computed (its output is exactly the
uncached one) and recorded, so the next run of this model and setup is fast. Each further
calibrating run adds to the profile; a run that used the plan records nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from ..adacache import AUTO_PRESETS, CodebookError, calibrate
from .calibration_store import STORE
from .run_setup import same_setup, store_key

log = logging.getLogger("AdaCache")
_PLANS: dict[tuple, object] = {}  # (the runs, speed) -> fitted CalibratedPlan (or None)
_LOCK = threading.Lock()


def resolve_auto(config, setup: dict | None, continuing: bool = False):
    """``config`` (an auto preset) as the config this sampling call runs: ``custom`` with a
    calibrated plan, or ``calibrate``; its note says which, for the node and the log.
    ``continuing``: this call is the next slice (KSamplerAdvanced) of a calibrating run, which
    goes on calibrating (the partial run in the store is not a profile to plan from)."""
    speed = AUTO_PRESETS[config.preset]
    if continuing:
        note = ("auto: calibrating - this sampler continues the previous sampler's calibrating "
                f"run (every step computed and recorded); the next runs run at ~{speed:g}x")
        return dataclasses.replace(config, preset="calibrate", notes=(*config.notes, note))
    key = store_key(setup) if setup else None
    runs = [r for r in STORE.runs(key) if same_setup(r.sample.setup, setup)] if key else []
    plan = _plan(runs, speed) if runs else None
    if plan is not None:
        note = (f"auto: the calibrated plan for {speed:g}x fewer block-stack steps, from "
                f"{len(runs)} recorded full run(s) of this model and setup")
        return dataclasses.replace(config, preset="custom", codebook=None, plan=plan,
                                   notes=(*config.notes, note))
    note = ("auto: calibrating - this run computes every step (full quality, exactly uncached) "
            f"and records them; the next runs of this model and setup run at ~{speed:g}x")
    return dataclasses.replace(config, preset="calibrate", notes=(*config.notes, note))


def _plan(runs, speed):
    # a run continued on the next slice keeps its id with a longer sample: its time is new
    cache_key = (tuple((r.run, r.recorded) for r in runs), speed)
    with _LOCK:
        if cache_key in _PLANS:
            return _PLANS[cache_key]
    try:
        plan = calibrate([r.sample for r in runs], speed).plan
    except CodebookError as e:  # e.g. runs too short to plan: calibrate once more
        log.info("AdaCache auto: no plan from the recorded runs (%s); calibrating", e)
        plan = None
    with _LOCK:
        _PLANS[cache_key] = plan
        while len(_PLANS) > 64:
            _PLANS.pop(next(iter(_PLANS)))
    return plan
