"""One sampling run of AdaCache: its schedule, its model calls' plans and its summary. The
block-stack hooks are ``stack_hooks.py``, the per-stream caches ``cache_store.py``, measuring a
compute step ``measure.py`` and what a calibration run records ``recording.py``.

The ComfyUI layer calls ``begin_call``/``end_call`` around every model evaluation, routes every
block of the stack through ``block``, the stack output through ``stack_output`` and side
modules between blocks through ``silenced_module``. Pure torch; interrupts and logging are
injected.

``begin_call`` makes the call's plan (``plan_call``): compute, reuse or pass through, and why,
as the schedule decides it (``CacheSchedule.decide_call``; the run never writes a step record).
Every hook reads that plan; the only change a hook may make is the fallback from reuse to
compute when the stored residual does not fit (``_reuse``, through ``CacheSchedule.force``). A
compute call's measures go to the schedule when the stack output arrives, which fixes the
step's rate there (``CacheSchedule.measure_all``). Stored residuals are stamped with
the compute step that produced them and only those of the run's last compute step are reused.
The plan of the call in progress lives in a context variable, so concurrent calls (threads)
never see each other's plan; what they share (the schedule, the stored residuals, the counters)
changes only under the run's lock (ComfyUI's MultiGPU work units run conds in threads).
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
from collections.abc import Callable

import torch

from .cache_store import CacheStore
from .calibration import CalibrationSample
from .config import AdaCacheConfig, parse_metric_blocks
from .families import WHOLE, Family
from .measure import Measurer
from .plan import CalibratedPlan
from .recording import CalibrationCarry, CalibrationRecording, moreg_for_plan
from .schedule import FOREIGN_BLOCKS, NO_CACHE, CacheSchedule, step_of_sigma
from .shard import COMPUTES_ELSEWHERE, SINGLE, ShardContext
from .stack_hooks import COMPUTE, PASSTHROUGH, REUSE, CallPlan, StackHooks, _locked
from .summary import plan_mismatch, run_summary

# A guidance pass with blocks replaced (SkipLayerGuidance) beside reused cond/uncond passes:
# its scale multiplies the difference cond - skip, and with it the cond pass's reuse error.
# Caching that pass as its own stream at the same steps did not help (measured, demo model).
SKIP_PASS_ON_CACHED_STEPS = (
    "a pass with blocks replaced by another patch (SkipLayerGuidance) runs on cached steps: "
    "its guidance scale amplifies the reuse error (measured on the demo model, SLG scale 3, "
    "preset fast: -10.7 dB against the same workflow uncached with SLG over 1-90 % of the "
    "schedule, -0.2 dB with SLG's default 1-15 %); narrow the SLG range or pick a slower "
    "preset"
)
log = logging.getLogger("AdaCache")


class AdaCacheRun(StackHooks):
    """One sampling call's run: its schedule, its calls' plans, its caches (the hooks:
    ``StackHooks``) and its summary."""

    def __init__(
        self,
        config: AdaCacheConfig,
        family: Family,
        n_blocks: int,
        sigmas: list[float],
        schedule_steps: float | None = None,
        cache_sigma_range: tuple[float, float] = (math.inf, 0.0),
        check_interrupt: Callable[[], None] = lambda: None,
        cache_device: torch.device | None = None,
        first_step: int = 0,
        positions=None,
        setup: dict | None = None,
        carry: CalibrationCarry | None = None,
        shard: ShardContext | None = None,
    ):
        """``schedule_steps``: the whole schedule's length at this run's step density;
        ``first_step``: where this run's first step sits in it (KSamplerAdvanced slices).
        Both place the MoReg window on the whole schedule. ``positions``: each step's place
        in the noise schedule (plan.py). ``setup``: what this run is (model, latent, sampler,
        cfg; compared with a plan's). ``carry``: a calibration continued from the previous
        slice of the same schedule. ``shard``: this rank's place in a run split over
        processes (shard.py; default one process)."""
        self.shard = shard or SINGLE
        self.shard.check_family(family)
        self.config = config
        self.family = family
        self.n_blocks = 1 if family.mode == WHOLE else n_blocks
        spec = "first" if family.mode == WHOLE else config.metric_blocks
        self.metric_positions = parse_metric_blocks(spec, self.n_blocks)
        n_steps = max(len(sigmas) - 1, 1)
        self.schedule_steps = schedule_steps or n_steps
        self.rule = config.rule_for(self.schedule_steps)  # a codebook or a calibrated plan
        self.warnings: list[str] = list(config.notes)
        self.setup = dict(setup or {})
        self.moreg_settings, note = moreg_for_plan(config.moreg, self.rule)
        self.warnings += [note] if note else []
        self.schedule = CacheSchedule(
            sigmas, self.rule, self.moreg_settings, cache_sigma_range,
            schedule_steps=self.schedule_steps, first_step=first_step, positions=positions,
            check_interrupt=check_interrupt, combine=self.shard.combine,
        )
        if isinstance(self.rule, CalibratedPlan):
            self.warnings += plan_mismatch(self.rule.setup, self.setup)
        self.check_interrupt = check_interrupt
        self.store = CacheStore(cache_device)
        self.streams = self.store.streams  # StreamKey -> StreamCache
        self._plan = contextvars.ContextVar(f"adacache_plan_{id(self)}", default=None)
        self.lock = threading.RLock()  # held while shared state changes (see the docstring)
        self.calibrating = config.preset == "calibrate"
        self.recording = CalibrationRecording(config.metric, carry) if self.calibrating else None
        self.calibration_run_id: str | None = None  # the host's id of a stitched calibration
        self.measurer = Measurer(family, config.metric, self.metric_positions, self.shard,
                                 self.calibrating, self.moreg_settings, self.warn_once)
        self.stack_runs = 0  # calls that ran the full block stack
        self.reused_calls = 0
        self.passthrough_calls = 0
        self.peak_cache_bytes = 0
        if self.schedule.n_steps < 5:
            self.warnings.append(
                f"only {self.schedule.n_steps} steps: the first two and last two are always "
                "computed, so AdaCache can skip at most "
                f"{max(self.schedule.n_steps - 4, 0)} step(s) here (few-step / distilled setup)"
            )
        if self.schedule.regularizer is not None and not family.is_video:
            self.warnings.append(
                "MoReg: no motion term for image models (one frame); its factor stays 1"
            )

    def __deepcopy__(self, memo):
        # A run travels in its sampling call's transformer_options; a host that deep-copies
        # those options must keep pointing at this one run, never at a copy of its caches.
        return self

    # -- calls -----------------------------------------------------------------------------
    @property
    def call(self) -> CallPlan | None:
        """The plan of the model call in progress in this context (thread), if any."""
        return self._plan.get()

    @_locked
    def begin_call(
        self,
        sigma: float,
        stream_keys: list,
        latent_shape,
        stack_intact=True,
        compute_reason=None,
        tail_tokens: int = 0,
    ) -> str:
        """Starts one model evaluation; returns its mode.

        ``stack_intact``: False when another patch replaced some of our blocks for this call.
        ``compute_reason``: this evaluation must run the stack (e.g. ControlNet hints or model
        patches added between blocks, which a stored residual would count twice).
        """
        step = step_of_sigma(self.schedule.sigmas, sigma)
        stream_keys = self.shard.local_streams(stream_keys)  # CFG parallel: this rank's cond
        if stack_intact:
            plan = self.plan_call(step, stream_keys, latent_shape, compute_reason)
        else:
            # e.g. SkipLayerGuidance's extra pass: run it exactly as asked, keep nothing from it
            self.passthrough_calls += 1
            trace = self.schedule.trace
            if trace and trace[min(step, len(trace) - 1)].computed is False:
                self.warn_once(SKIP_PASS_ON_CACHED_STEPS)
            plan = CallPlan(PASSTHROUGH, FOREIGN_BLOCKS, list(stream_keys), tuple(latent_shape))
        plan.tail_tokens = tail_tokens  # Family.tail_tokens: after the video, not frames
        plan.log = {"mode": plan.mode, "reason": plan.reason}
        # -- split runs (shard.py): any rank runs the stack, every rank does
        if self.shard.agree(plan.mode != REUSE) and plan.mode == REUSE:
            self._force_compute(plan, COMPUTES_ELSEWHERE)
        # --
        self.schedule.log_call(step, plan.log)
        plan.token = self._plan.set(plan)
        return plan.mode

    def plan_call(self, step: int, stream_keys: list, latent_shape, compute_reason=None
                  ) -> CallPlan:
        """This call's plan from the schedule's decision (``CacheSchedule.decide_call``): the
        step's own, the host's ``compute_reason``, then whether every stream has a residual
        from the last compute step."""
        keys = list(stream_keys)
        record = self.schedule.decide_call(
            step, compute_reason,
            lambda: self.store.problem(keys, self.schedule.last_compute_step(step)),
        )
        if compute_reason and record.reason == compute_reason and not any(
            w.startswith(compute_reason) for w in self.warnings
        ):
            self.warnings.append(f"{compute_reason}: those steps are computed instead of reused")
        mode = COMPUTE if record.computed else REUSE
        return CallPlan(mode, record.reason, keys, tuple(latent_shape), record)

    @_locked
    def end_call(self) -> None:
        call = self.call
        if call is None:
            return
        self._plan.reset(call.token)
        if call.mode == PASSTHROUGH:
            return
        if call.mode == REUSE:
            self.reused_calls += 1
        self.peak_cache_bytes = max(self.peak_cache_bytes, self.store.nbytes())

    @_locked
    def warn_once(self, note: str) -> None:
        if note not in self.warnings:
            self.warnings.append(note)

    @_locked
    def _force_compute(self, call: CallPlan, reason: str = NO_CACHE) -> None:
        call.mode, call.reason = COMPUTE, reason
        call.log.update(mode=COMPUTE, reason=reason)
        if call.record is not None:
            self.schedule.force(call.record.step, reason)

    # -- calibration (recording.py) --------------------------------------------------------
    @property
    def gap_rows(self) -> dict[int, list[tuple]]:
        return self.recording.gap_rows

    def calibration_sample(self) -> CalibrationSample:
        """This run as a calibration sample (after the slices it continues)."""
        return self.recording.sample(self.schedule.trace, self.schedule.positions, self.setup)

    def calibration_carry(self) -> CalibrationCarry:
        """What the next slice of the same schedule needs to continue this calibration."""
        return self.recording.carry_on(self.calibration_sample())

    # -- reporting -------------------------------------------------------------------------
    def summary(self, interrupted: bool = False) -> dict:
        return run_summary(self, interrupted)

    def finish(self, interrupted: bool = False) -> dict:
        """Closes the run and returns its summary; never raises (reporting must not fail a
        finished run nor replace an interrupt's exception). ``interrupted``: sampling did not
        return (an interrupt or an error); the summary says so and gives no advice."""
        try:
            self.schedule.close()
            summary = self.summary(interrupted)
        except Exception as e:  # a bug in reporting: keep the run's result, say what failed
            log.warning("AdaCache: could not build the run summary: %s", e, exc_info=True)
            summary = {"family": self.family.name, "steps": self.schedule.n_steps,
                       "warnings": [f"could not build the run summary: {e}"], "trace": []}
        self.store.clear()
        return summary

