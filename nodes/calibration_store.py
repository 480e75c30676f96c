"""Calibration runs in ComfyUI: what a run was recorded on, the recorder behind preset
"calibrate", and the process-wide store AdaCache Calibrate fits from.

A sampling run of a model patched by AdaCache Apply with preset ``calibrate`` computes every
step; when it finishes normally its per-step changes and motion scores become a
``CalibrationSample`` that says what it was recorded on (``run_setup``: model class and weights
fingerprint, latent shape, sampler, cfg, sigmas; the noise-schedule position of each step). The
store keys runs by model (``model_key``), not by node id, so every Apply on the same model
shares them and two workflows' "Apply 4" never do. A run that continues the previous run's
schedule (the next KSamplerAdvanced slice of the same prompt) is stitched onto it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from comfy.patcher_extension import WrappersMP

from ..adacache import CalibrationSample
from .run_setup import RUNS, prompt_id, store_key

log = logging.getLogger("AdaCache")
RECORDER_KEY = "adacache.calibration"
MAX_RUNS_PER_MODEL = 256


@dataclass
class RecordedRun:
    """One finished calibration run."""

    sample: CalibrationSample
    prompt_id: str | None
    recorded: float  # time.time()
    run: str  # a uuid4 hex per run (the first slice's, for a stitched run)
    batch: int = 1  # videos in the batch (the sample averages them)


class CalibrationStore:
    """Calibration runs per model key, in the order they finished."""

    def __init__(self):
        self._runs: dict[str, list[RecordedRun]] = {}
        self._lock = threading.Lock()

    def add(self, key, run: RecordedRun) -> None:
        """Appends ``run``, or replaces the run it continues (same ``run`` id)."""
        with self._lock:
            runs = self._runs.setdefault(str(key), [])
            runs[:] = [r for r in runs if r.run != run.run]
            runs.append(run)
            del runs[:-MAX_RUNS_PER_MODEL]

    def runs(self, key) -> list[RecordedRun]:
        with self._lock:
            return list(self._runs.get(str(key), []))

    def clear(self, key) -> None:
        with self._lock:
            self._runs.pop(str(key), None)


STORE = CalibrationStore()


def attach_recorder(model) -> None:
    """Records every finished sampling run of ``model`` (patched, preset calibrate) in STORE.

    An OUTER_SAMPLE wrapper inside AdaCache's own: when sampling returns normally the run is
    still registered in the guider's options (patch.RUNS), with every step measured; it also
    leaves the run's recorders on the handle for a next slice of the same schedule.
    Interrupted or failed runs record nothing.
    """
    handle = model.model_options["transformer_options"]["adacache_handle"]

    def adacache_calibration_recorder(executor, *args, **kwargs):
        prompt = prompt_id()
        out = executor(*args, **kwargs)
        try:
            # this sampling call's run, still registered by AdaCache's own (outer) wrapper
            options = executor.class_obj.model_options.get("transformer_options", {})
            run = (options.get(RUNS) or {}).get(handle)
            if run is not None and run.calibrating:  # preset calibrate, or auto calibrating
                noise = args[0] if args else None  # outer_sample(noise, latent_image, ...)
                batch = int(noise.shape[0]) if hasattr(noise, "shape") else 1
                run_id = getattr(run, "calibration_run_id", None) or uuid.uuid4().hex
                carry = run.calibration_carry()  # holds this run's sample
                key = store_key(run.setup) or store_key(executor.class_obj.model_patcher)
                STORE.add(key, RecordedRun(carry.sample, prompt, time.time(), run_id, batch))
                carry.recorders = [(same, r.offloaded()) for same, r in carry.recorders]
                sigmas = args[3] if len(args) > 3 else kwargs.get("sigmas")
                handle.calibration_carry = (
                    prompt, float(sigmas[-1]), tuple(noise.shape[1:]), carry, run_id
                )
        except Exception as e:  # recording must never fail a finished run
            log.warning("AdaCache: could not record the calibration run: %s", e)
        return out

    model.remove_wrappers_with_key(WrappersMP.OUTER_SAMPLE, RECORDER_KEY)
    model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, RECORDER_KEY, adacache_calibration_recorder)
