"""One sampling run of AdaCache: per-stream caches and the block-stack hooks.

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
import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .calibration import CalibrationSample, GapRecorder
from .config import (
    AdaCacheConfig,
    parse_metric_blocks,
)
from .families import WHOLE, Family
from .metrics import metric_sample, motion_score, relative_distance
from .moreg import MoRegSettings
from .schedule import (
    FOREIGN_BLOCKS,
    NO_CACHE,
    STALE_CACHE,
    WINDOW_NO_CACHE,
    CacheSchedule,
    StepRecord,
    step_of_sigma,
)
from .shard import COMPUTES_ELSEWHERE, SINGLE, ShardContext
from .summary import plan_mismatch, run_summary

COMPUTE, REUSE, PASSTHROUGH = "compute", "reuse", "passthrough"
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


class StreamKey(NamedTuple):
    """What one stored residual was computed for: a cond entry (its uuid), the context window
    the host sliced the latent to (None: the whole latent) and the per-stream latent shape (any
    other slicing shows there). Equal keys, and only those, share a residual."""

    cond: object
    window: object = None
    latent: tuple = ()


@dataclass
class StreamCache:
    """What one stream keeps between steps."""

    residual: dict[str, torch.Tensor] | None = None  # stack output - input, per carried key
    step: int | None = None  # the compute step that produced ``residual``
    metric: dict[int, torch.Tensor] = field(default_factory=dict)  # metric-block residuals
    metric_step: int | None = None

    def nbytes(self) -> int:
        tensors = [*(self.residual or {}).values(), *self.metric.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class CallPlan:
    """What one model call does and why; made once by ``plan_call``, read by every hook."""

    mode: str
    reason: str
    stream_keys: list
    latent_shape: tuple[int, ...]
    record: StepRecord | None = None
    stack_input: dict[str, torch.Tensor] | None = None
    metric_residuals: dict[int, torch.Tensor] = field(default_factory=dict)
    tail_tokens: int = 0  # tokens after the video tokens (Family.tail_tokens), not frames
    log: dict = field(default_factory=dict)  # this call's entry in its step's call_plans
    token: object = None  # restores the context variable in end_call


@dataclass
class CalibrationCarry:
    """A calibration run that ended at a slice boundary (KSamplerAdvanced, one model's part):
    its sample so far, its length and its per-stream recorders (in the order the streams
    appeared), so the next slice of the same schedule records gaps across the cut."""

    sample: CalibrationSample
    steps: int
    recorders: list


def _locked(method):
    """``method`` run under its run's lock (calls from threads share one run)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class AdaCacheRun:
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
        self.codebook = config.codebook_for(self.schedule_steps)
        self.warnings: list[str] = list(config.notes)
        self.setup = dict(setup or {})
        self.moreg_settings = self._moreg_for_plan(config.moreg)
        self.schedule = CacheSchedule(
            sigmas, self.codebook, self.moreg_settings, cache_sigma_range,
            schedule_steps=self.schedule_steps, first_step=first_step, positions=positions,
            check_interrupt=check_interrupt, combine=self.shard.combine,
        )
        if self.codebook.planned:
            self.warnings += plan_mismatch(self.codebook.setup, self.setup)
        self.check_interrupt = check_interrupt
        # None: residuals stay where they were computed; metric tensors always do
        self.cache_device = cache_device
        self._pinned: dict = {}  # (stream, key) -> page-locked CPU buffer for offload_cache
        self.streams: dict[object, StreamCache] = {}
        self._plan = contextvars.ContextVar(f"adacache_plan_{id(self)}", default=None)
        self.lock = threading.RLock()  # held while shared state changes (see the docstring)
        self.calibrating = config.preset == "calibrate"
        self.gap_recorders: dict[object, GapRecorder] = {}
        self.gap_rows: dict[int, list[tuple]] = {}  # step -> one row per stream
        self.carry = carry if self.calibrating else None
        self.calibration_run_id: str | None = None  # the host's id of a stitched calibration
        self._carried = list(carry.recorders) if self.carry else []
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
        if self.schedule.moreg is not None and not family.is_video:
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
            step, compute_reason, lambda: self._cache_problem(keys, step)
        )
        if compute_reason and record.reason == compute_reason and not any(
            w.startswith(compute_reason) for w in self.warnings
        ):
            self.warnings.append(f"{compute_reason}: those steps are computed instead of reused")
        mode = COMPUTE if record.computed else REUSE
        return CallPlan(mode, record.reason, keys, tuple(latent_shape), record)

    def _cache_problem(self, stream_keys: list, step: int) -> str | None:
        last = self.schedule.last_compute_step(step)
        for key in stream_keys:
            stream = self.streams.get(key)
            if stream is not None and stream.step is not None and stream.step != last:
                return STALE_CACHE  # this stream missed the last compute step
            if stream is None or stream.residual is None:
                return WINDOW_NO_CACHE if getattr(key, "window", None) is not None else NO_CACHE
        return None

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
        total = sum(s.nbytes() for s in self.streams.values())
        self.peak_cache_bytes = max(self.peak_cache_bytes, total)

    # -- hooks -----------------------------------------------------------------------------
    def block(self, position: int, args: dict, run_inner: Callable[[dict], dict]) -> dict:
        """One block of the stack (blocks mode)."""
        call = self.call
        if call is None or call.mode == PASSTHROUGH:
            return run_inner(args)
        family = self.family
        if call.mode == REUSE:
            if position != 0:
                return args  # the stored residual already holds what this block adds
            carried = family.carried(args)
            cached = self._reuse(call, carried)
            if cached is not None:
                if family.reuse_runs_first_block:
                    carried = {k: v.clone() for k, v in carried.items()}  # see below
                    run_inner(args)  # for the state it leaves (Family.reuse_runs_first_block)
                return family.with_carried(args, {k: v + cached[k] for k, v in carried.items()})
        # Blocks may add their output into their input tensors in place (ComfyUI's flux-style
        # blocks, LTX-Video: ``img += ...``), so what is kept of a block's input is a copy.
        if position == 0:
            call.stack_input = {k: v.clone() for k, v in family.carried(args).items()}
            with self.lock:
                self.stack_runs += 1
        before = family.metric_part(args).clone() if position in self.metric_positions else None
        out = run_inner(args)
        if before is not None:
            call.metric_residuals[position] = family.metric_part(out) - before
        # a split sequence: the stack output on this rank's shard, before the engine gathers
        last = family.output_module is None or self.shard.splits_sequence
        if last and position == self.n_blocks - 1:
            self.stack_output(out[family.hidden_key])
        return out

    def whole_model(self, x: torch.Tensor, run_inner: Callable[[], torch.Tensor]):
        """The diffusion model's forward (whole mode): reuse output - input on cached calls."""
        call = self.call
        if call is None or call.mode == PASSTHROUGH:
            return run_inner()
        if call.mode == REUSE:
            stream = self.streams.get(call.stream_keys[0])
            like = None if stream is None or stream.residual is None else stream.residual["out"]
            view = None if like is None else _crop(x, like.shape[1:])
            cached = self._reuse(call, {"out": view} if view is not None else None)
            if cached is not None:
                return view + cached["out"]
        with self.lock:
            self.stack_runs += 1
        out = run_inner()
        view = _crop(x, out.shape[1:])
        if view is None:  # output not a crop of the input: nothing we can cache
            return out
        call.stack_input = {"out": view}
        call.metric_residuals[0] = out - view
        self.stack_output(out)
        return out

    def _reuse(self, call: CallPlan, current: dict[str, torch.Tensor] | None) -> dict | None:
        """The reuse-or-fall-back step both reuse paths share: the stored residuals batched
        like ``current``, or None after turning the call into a compute call."""
        cached = None if current is None else self._cached_residual(call, current)
        if self.shard.agree(cached is None):  # split runs: one rank falls back, every rank does
            cached = None
        if cached is None:
            self._force_compute(call, NO_CACHE)
            return None
        self.check_interrupt()
        return cached

    @_locked
    def stack_output(self, hidden) -> None:
        """The hidden state after the whole stack (including any side-module hints)."""
        call = self.call
        if call is None or call.mode != COMPUTE or call.stack_input is None:
            return
        stack_input, call.stack_input = call.stack_input, None
        img = stack_input.get("img")
        img_tokens = img.shape[1] if img is not None and img.ndim == 3 else None
        if self.family.mode == WHOLE:
            outputs = {"out": hidden}
        else:
            outputs = self.family.split_output(hidden, stack_input)
        residuals = {
            k: self._chunks(outputs[k] - stack_input[k], call.stream_keys) for k in stack_input
        }
        metrics = {p: self._chunks(r, call.stream_keys) for p, r in call.metric_residuals.items()}
        call.metric_residuals = {}
        step = call.record.step
        measures = []
        for stream in self.streams.values():  # older residuals can never be reused again
            if stream.step is not None and stream.step < step:
                stream.residual = None
        for i, stream_key in enumerate(call.stream_keys):
            stream = self.streams.setdefault(stream_key, StreamCache())
            stream.residual = {k: self._store(r[i], (stream_key, k)) for k, r in residuals.items()}
            stream.step = step
            # metric samples stay on the compute device: distances and motion run there
            full = {p: m[i].detach() for p, m in metrics.items()}
            if not full or stream.metric_step == step:
                continue  # later evaluations of a step refresh only the residual
            if self.shard.splits_sequence:  # this shard's part of the whole sequence's samples
                full, current = self.shard.metrics(
                    full, self.metric_positions[0], self.family, call.latent_shape,
                    call.tail_tokens, self.calibrating, self.schedule.moreg is not None,
                )
            else:
                channels_last = self.family.mode != WHOLE
                current = {p: metric_sample(m, channels_last) for p, m in full.items()}
            if stream.metric_step is not None and set(stream.metric) == set(current) and all(
                stream.metric[p].shape == current[p].shape for p in current
            ):
                measures.append(self._measure(
                    stream, current, full[self.metric_positions[0]], step, call.latent_shape,
                    img_tokens, call.tail_tokens,
                ))
            stream.metric, stream.metric_step = current, step
            if self.calibrating:
                recorder = self.gap_recorders.get(stream_key)
                if recorder is None:  # a continued calibration: the streams in their order
                    recorder = self._carried.pop(0) if self._carried else GapRecorder(
                        self.config.metric
                    )
                    self.gap_recorders[stream_key] = recorder
                offset = self.carry.steps if self.carry else 0
                self.gap_rows.setdefault(step, []).append(recorder.add(offset + step, current))
        self.schedule.measure_all(measures, step)  # the step's rate, fixed now

    def _measure(
        self, stream: StreamCache, current: dict, hidden: torch.Tensor, step: int, latent_shape,
        img_tokens=None, tail_tokens=0,
    ) -> tuple[float, int, float | None]:
        """The change of this stream's metric samples since its last compute step, per step,
        its gap and (MoReg, calibration) the motion score of the full metric residual
        ``hidden``: one measure for ``CacheSchedule.measure_all``."""
        gap = step - stream.metric_step
        if self.shard.splits_sequence and not self.calibrating:  # one all-reduce (shard.py)
            parts = self.shard.distances(current, stream.metric, self.config.metric).values()
        else:
            parts = [relative_distance(current[p], stream.metric[p], self.config.metric)
                     for p in current]
        distance = sum(parts) / (len(current) * max(gap, 1))
        motion = None
        moreg = self.schedule.moreg is not None
        if (moreg or self.calibrating) and self.family.is_video:
            frames = self.family.frames(hidden, latent_shape, img_tokens, tail_tokens)
            strides = tuple(self.moreg_settings.strides) if self.moreg_settings else (1,)
            if frames is None:
                if moreg:
                    self.warn_once(
                        "MoReg: the video has one latent frame (or too few tokens for its "
                        "frames): no motion to measure; its factor stays 1"
                    )
            else:
                motion = motion_score(frames, strides)
                if motion is None and moreg:
                    self.warn_once(
                        f"MoReg: every frame stride {list(strides)} is as long as the video "
                        f"({frames.shape[1]} latent frames) or longer: no motion to measure; "
                        "its factor stays 1"
                    )
        return distance, gap, motion

    @_locked
    def warn_once(self, note: str) -> None:
        if note not in self.warnings:
            self.warnings.append(note)

    def silenced_module(self, returns: str, run_inner: Callable, *args, **kwargs):
        """A module run between blocks (Family.silenced_modules): a no-op on cached evaluations,
        whose stored residual already holds what it added."""
        call = self.call
        if call is not None and call.mode == REUSE:
            state = args[0] if args else next(iter(kwargs.values()))
            if returns == "input":
                return state
            zero = torch.zeros((), dtype=state.dtype, device=state.device)
            return (zero, state) if returns == "addend_and_input" else zero
        return run_inner(*args, **kwargs)

    # -- helpers ---------------------------------------------------------------------------
    def _store(self, tensor: torch.Tensor, slot=None) -> torch.Tensor:
        """The residual to keep: on the compute device, or copied to ``cache_device``.

        From a GPU to CPU memory the copy goes into a page-locked buffer kept per stream and
        key and reused at every compute step, without waiting: both this copy and the copy back
        on a cached step are queued on the compute stream, so they stay in order, and the CPU
        never reads the buffer (measured on an H100: 33 ms -> 0.8 ms for 41 MiB).
        """
        tensor = tensor.detach()
        if self.cache_device is None or tensor.device == self.cache_device:
            return tensor
        if tensor.is_cuda and self.cache_device.type == "cpu" and slot is not None:
            buffer = self._pinned.get(slot)
            if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                try:
                    buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                except RuntimeError:  # no page-locked memory to be had: a plain copy
                    return tensor.to(self.cache_device)
                self._pinned[slot] = buffer
            return buffer.copy_(tensor, non_blocking=True)
        return tensor.to(self.cache_device)

    @staticmethod
    def _chunks(tensor: torch.Tensor, keys: list) -> list[torch.Tensor]:
        return list(tensor.chunk(len(keys), dim=0)) if len(keys) > 1 else [tensor]

    def _cached_residual(self, call: CallPlan, current: dict[str, torch.Tensor]) -> dict | None:
        """The stored residuals of this call's streams, batched like ``current``, or None."""
        keys = call.stream_keys
        out = {}
        for name, tensor in current.items():
            per_stream = tensor.shape[0] // max(len(keys), 1)
            parts = []
            for stream_key in keys:
                stream = self.streams.get(stream_key)
                r = None if stream is None or stream.residual is None else stream.residual.get(name)
                if r is None or r.shape != (per_stream, *tensor.shape[1:]):
                    return None
                if r.device != tensor.device and self.cache_device is None:
                    return None  # a cache from another device is stale, never moved silently
                parts.append(r.to(device=tensor.device, dtype=tensor.dtype,
                                  non_blocking=r.is_pinned()))
            out[name] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        return out

    @_locked
    def _force_compute(self, call: CallPlan, reason: str = NO_CACHE) -> None:
        call.mode, call.reason = COMPUTE, reason
        call.log.update(mode=COMPUTE, reason=reason)
        if call.record is not None:
            self.schedule.force(call.record.step, reason)

    def calibration_sample(self) -> CalibrationSample:
        """This run as a calibration sample: per step, the change over every gap (streams
        averaged, as the schedule averages them) and the motion score."""
        trace = self.schedule.trace
        rows: list[tuple] = []
        for step in range(len(trace)):
            per_stream = self.gap_rows.get(step, [])
            width = max((len(r) for r in per_stream), default=0)
            row = []
            for k in range(width):
                values = [r[k] for r in per_stream if k < len(r) and r[k] is not None]
                row.append(sum(values) / len(values) if values else None)
            rows.append(tuple(row))
        sample = CalibrationSample(
            tuple(r.distance for r in trace), tuple(r.motion for r in trace), tuple(rows),
            self.schedule.positions, self.setup or None,
        )
        return self.carry.sample.then(sample) if self.carry else sample

    def calibration_carry(self) -> CalibrationCarry:
        """What the next slice of the same schedule needs to continue this calibration."""
        recorders = list(self.gap_recorders.values())  # in the order the streams appeared
        sample = self.calibration_sample()
        return CalibrationCarry(sample, sample.n_steps, recorders)

    def _moreg_for_plan(self, moreg: MoRegSettings | None) -> MoRegSettings | None:
        """The MoReg a run uses. A calibrated plan reads MoReg only normalised to the model
        (a reference motion): the MoReg Settings constants give a factor near 0 there, which
        would skip almost every step. So a plan brings back the MoReg calibrated with it, and
        MoReg without a reference is turned off with a plan that has none."""
        if not self.codebook.planned or (moreg is not None and (
            moreg.reference or not moreg.enabled
        )):
            return moreg  # no plan, MoReg calibrated already, or switched off
        carried = self.codebook.moreg
        if moreg is None:
            if carried is not None:
                self.warnings.append(
                    "MoReg: the calibrated plan brings back the MoReg calibrated with it"
                )
            return carried
        if carried is not None:
            self.warnings.append(
                "MoReg: the connected MoReg Settings' reference constants do not fit a calibrated "
                "plan; the MoReg calibrated with the plan is used instead"
            )
            return carried
        self.warnings.append(
            "MoReg is off for this run: MoReg Settings' reference constants do not fit a "
            "calibrated plan (calibrate with 'moreg' on to get MoReg normalised to the model)"
        )
        return None

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
        self.streams.clear()
        self._pinned.clear()
        return summary

def _crop(x: torch.Tensor, shape) -> torch.Tensor | None:
    """``x`` cut to ``[batch, *shape]`` from the start of each dim (extra channels, padding)."""
    if x.ndim != len(shape) + 1 or any(a < b for a, b in zip(x.shape[1:], shape, strict=True)):
        return None
    return x[(slice(None), *(slice(0, n) for n in shape))]


