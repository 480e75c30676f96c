"""One sampling run of AdaCache: per-stream caches and the block-stack hooks.

The ComfyUI layer calls ``begin_call``/``end_call`` around every model evaluation, routes every
block of the stack through ``block``, the stack output through ``stack_output`` and side
modules between blocks through ``silenced_module``. Pure torch; interrupts and logging are
injected.

``begin_call`` makes the call's plan (``plan_call``): compute, reuse or pass through, and why.
Every hook reads that plan; the only change a hook may make is the fallback from reuse to
compute when the stored residual does not fit (``_reuse``). Stored residuals are stamped with
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .calibration import CalibrationSample, GapRecorder
from .codebook import Codebook, CodebookError, calibrated_codebook, preset_codebook
from .families import WHOLE, Family
from .metrics import METRICS, metric_sample, motion_score, relative_distance
from .moreg import MoRegSettings
from .schedule import (
    FINAL,
    FOREIGN_BLOCKS,
    NO_CACHE,
    OUTSIDE_RANGE,
    SCHEDULED,
    STALE_CACHE,
    WARMUP,
    WINDOW_NO_CACHE,
    CacheSchedule,
    StepRecord,
    step_of_sigma,
)
from .shard import COMPUTES_ELSEWHERE, SINGLE, ShardContext

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
# "auto" presets (ours): a calibrated plan at this speed when runs of the same model and setup
# are recorded, else this run calibrates (every step computed, recorded); the ComfyUI layer
# resolves them per sampling call (nodes/auto.py) into "custom" with the plan or "calibrate".
AUTO_PRESETS = {"auto balanced (3x)": 3.0, "auto quality (2x)": 2.0, "auto fast (4x)": 4.0,
                "auto fastest (5x)": 5.0}
PRESET_CHOICES = (*AUTO_PRESETS, "fast", "medium", "slow", "custom", "calibrate")
# preset "calibrate": every step computed, changes over every gap and motion recorded
CALIBRATION_CODEBOOK = Codebook((1.0e9,), (1,))
log = logging.getLogger("AdaCache")


class MetricBlocksError(ValueError):
    pass


def parse_metric_blocks(spec: str, n_blocks: int) -> tuple[int, ...]:
    """'middle' (n // 2), 'first', 'last', or comma-separated indices (negative from the end)."""
    named = {"middle": n_blocks // 2, "mid": n_blocks // 2, "first": 0, "last": n_blocks - 1}
    out: list[int] = []
    for i, part in enumerate(str(spec).split(",")):
        part = part.strip().lower()
        if part in named:
            index = named[part]
        else:
            try:
                index = int(part)
            except ValueError:
                raise MetricBlocksError(
                    f"metric block entry {i + 1} ({part!r}) is not 'middle', 'first', 'last' "
                    "or a block index"
                ) from None
            if index < 0:
                index += n_blocks
        if not 0 <= index < n_blocks:
            raise MetricBlocksError(
                f"metric block entry {i + 1} ({part!r}) is outside the stack of {n_blocks} blocks"
            )
        if index not in out:
            out.append(index)
    return tuple(out)


@dataclass(frozen=True)
class AdaCacheConfig:
    preset: str = "fast"
    codebook: Codebook | None = None  # used when preset == "custom"; ignored by "calibrate"
    moreg: MoRegSettings | None = None
    metric: str = "l1"
    metric_blocks: str = "middle"
    start_percent: float = 0.0  # caching allowed from this fraction of the noise schedule ...
    end_percent: float = 1.0  # ... up to this one
    verbose: bool = False
    offload_cache: bool = False  # keep cached residuals on the offload device (CPU memory)
    notes: tuple[str, ...] = ()  # said in every run's summary (e.g. what replaced the preset)
    compute_steps: tuple[int, ...] = ()  # a fixed schedule instead of the rule (baselines)

    def __post_init__(self):
        if self.preset not in PRESET_CHOICES:
            raise CodebookError(f"unknown preset {self.preset!r}; choose {PRESET_CHOICES}")
        if self.preset == "custom" and self.codebook is None:
            raise CodebookError(
                "preset 'custom' needs a codebook: connect a Codebook Editor to 'codebook'"
            )
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {METRICS}")
        for name in ("start_percent", "end_percent"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be a finite number")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError("need 0 <= start_percent <= end_percent <= 1")

    def codebook_for(self, steps: float) -> Codebook:
        if self.preset in AUTO_PRESETS:
            raise CodebookError(f"preset {self.preset!r} is resolved per sampling call first")
        if self.preset == "calibrate":
            return CALIBRATION_CODEBOOK
        if self.preset == "custom":
            return self.codebook
        return preset_codebook(self.preset, steps)


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
        steps_for_codebook: float | None = None,
        cache_sigma_range: tuple[float, float] = (math.inf, 0.0),
        check_interrupt: Callable[[], None] = lambda: None,
        cache_device: torch.device | None = None,
        first_step: int = 0,
        positions=None,
        setup: dict | None = None,
        carry: CalibrationCarry | None = None,
        shard: ShardContext | None = None,
    ):
        """``steps_for_codebook``: the whole schedule's length at this run's step density;
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
        self.steps_for_codebook = steps_for_codebook or n_steps
        self.codebook = config.codebook_for(self.steps_for_codebook)
        self.warnings: list[str] = list(config.notes)
        self.setup = dict(setup or {})
        self.moreg_settings = self._moreg_for_plan(config.moreg)
        self.schedule = CacheSchedule(
            sigmas, self.codebook, self.moreg_settings, cache_sigma_range, config.compute_steps,
            schedule_steps=self.steps_for_codebook, first_step=first_step, positions=positions,
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
            plan = self.plan_call(self.schedule.enter(step), stream_keys, latent_shape,
                                  compute_reason)
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
        trace = self.schedule.trace
        if trace:
            trace[min(step, len(trace) - 1)].call_plans.append(plan.log)
        plan.token = self._plan.set(plan)
        return plan.mode

    def plan_call(
        self, record: StepRecord, stream_keys: list, latent_shape, compute_reason=None
    ) -> CallPlan:
        """The one place that decides whether a call runs the stack. In order: the step's own
        decision (warm-up, final, outside range, scheduled), a reason the host layer gives
        (ControlNet hints, model patches between blocks), then whether every stream has a
        residual from the last compute step (no usable cache, context window without its own
        cache, stale cache). A reused step whose call must compute becomes a compute step."""
        keys = list(stream_keys)
        if record.computed:
            return CallPlan(COMPUTE, record.reason, keys, tuple(latent_shape), record)
        reason = compute_reason or self._cache_problem(keys, record.step)
        if reason is None:
            return CallPlan(REUSE, record.reason, keys, tuple(latent_shape), record)
        if compute_reason and not any(w.startswith(compute_reason) for w in self.warnings):
            self.warnings.append(f"{compute_reason}: those steps are computed instead of reused")
        record.computed, record.reason = True, reason
        return CallPlan(COMPUTE, reason, keys, tuple(latent_shape), record)

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
                self._measure(
                    stream, current, full[self.metric_positions[0]], step, call.latent_shape,
                    img_tokens, call.tail_tokens,
                )
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

    def _measure(
        self, stream: StreamCache, current: dict, hidden: torch.Tensor, step: int, latent_shape,
        img_tokens=None, tail_tokens=0,
    ) -> None:
        """The change of this stream's metric samples since its last compute step, per step,
        and (MoReg, calibration) the motion score of the full metric residual ``hidden``."""
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
        self.schedule.measure(distance, gap, motion)

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
        record = call.record
        if record is not None and not record.computed:
            record.computed, record.reason = True, reason

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

    def summary(self, interrupted: bool = False) -> dict:
        s = self.schedule
        reached = [r for r in s.trace if r.computed is not None]
        computed = len(s.computed_steps)
        distances = [r.distance for r in s.trace if r.distance is not None]
        rates = self.codebook.rates
        if max(rates) <= 1:  # suggest a codebook that can reuse steps
            rates = preset_codebook("fast", self.steps_for_codebook).rates
        calibrated = None if interrupted else calibrated_codebook(distances, rates)
        warnings = list(self.warnings)
        if interrupted:  # a partial run: nothing recorded, no advice drawn from it
            warnings = [f"interrupted at step {len(reached)} of {s.n_steps}: this partial run "
                        "recorded nothing and gives no advice"]
        elif not self.calibrating and len(reached) >= 5 and not s.reused_steps:
            warnings.append(self._no_reuse_advice(reached, distances, calibrated))
        return {
            "family": self.family.name,
            "preset": self.config.preset,
            "calibration": self.calibrating,
            "interrupted": interrupted,
            "mode": self.family.support,
            "steps": s.n_steps,
            "steps_reached": len(reached),
            "computed_steps": computed,
            "reused_steps": len(s.reused_steps),
            "pattern": s.pattern(),
            "estimated_speedup": (len(reached) / computed) if computed else 1.0,
            "stack_runs": self.stack_runs,
            "reused_calls": self.reused_calls,
            "passthrough_calls": self.passthrough_calls,
            "call_reasons": dict(Counter(
                f"{p['mode']}: {p['reason']}" for r in s.trace for p in r.call_plans
            )),
            "codebook": self.codebook.describe(),
            "codebook_text": self.codebook.editor_text(),  # as the Codebook Editor takes it
            "codebook_values": self.codebook.summary_values(),
            "codebook_steps": round(self.steps_for_codebook, 2),
            "metric": self.config.metric,
            "metric_blocks": list(self.metric_positions),
            "moreg": self.schedule.moreg is not None,
            "setup": self.setup or None,
            "peak_cache_bytes": self.peak_cache_bytes,
            "streams": len(self.streams),
            "distance_range": [min(distances), max(distances)] if distances else None,
            "calibrated_codebook": calibrated.editor_text() if calibrated else None,
            "cache_sigma_range": [
                v if math.isfinite(v) else None for v in (s.cache_sigma_high, s.cache_sigma_low)
            ],
            "warnings": warnings,
            "calibration_sample": (
                self.calibration_sample().to_dict() if self.calibrating and not interrupted
                else None
            ),
            "trace": [r.as_dict() for r in s.trace],
            # where the what-if replays the trace (schedule.predict_schedule)
            "sigmas": list(s.sigmas),
            "positions": list(s.positions),
        }

    def _no_reuse_advice(self, reached, distances, calibrated) -> str:
        """Why no step was reused, and what would change that."""
        middle = [r for r in reached if r.reason not in (WARMUP, FINAL)]
        if not middle:
            return "no step was reused: with so few steps only warm-up and final steps remain"
        if all(r.reason == OUTSIDE_RANGE for r in middle):
            return (
                "no step was reused: start_percent/end_percent "
                f"({self.config.start_percent:g}..{self.config.end_percent:g}) exclude every "
                "step that could be cached; widen that range (0..1 allows every step)"
            )
        if not any(r.reason == SCHEDULED for r in middle):
            reasons = sorted({r.reason for r in middle})
            return f"no step was reused: every cacheable step was computed ({', '.join(reasons)})"
        if not distances:
            return "no step was reused: no distance was measured (was the block stack run?)"
        text = (
            f"no step was reused: every distance ({min(distances):.4g}..{max(distances):.4g} "
            f"per step) selected cache rate 1 in {self.codebook.editor_text()}; pick a faster "
            "preset"
        )
        if calibrated is not None:
            text += f" or a codebook calibrated to this model, e.g. {calibrated.editor_text()}"
        return text + " (preset 'calibrate' + AdaCache Calibrate fit one to your model)"


def _crop(x: torch.Tensor, shape) -> torch.Tensor | None:
    """``x`` cut to ``[batch, *shape]`` from the start of each dim (extra channels, padding)."""
    if x.ndim != len(shape) + 1 or any(a < b for a, b in zip(x.shape[1:], shape, strict=True)):
        return None
    return x[(slice(None), *(slice(0, n) for n in shape))]


def format_summary(summary: dict) -> str:
    """The log lines of a run summary; never raises (an incomplete summary says so)."""
    try:
        return _format_summary(summary)
    except (KeyError, TypeError, ValueError) as e:
        warnings = "; ".join(str(w) for w in summary.get("warnings", []))
        return f"AdaCache: incomplete run summary (missing {e}); {warnings}"


def _format_summary(summary: dict) -> str:
    codebook = summary.get("codebook_text") or summary["codebook"]  # the editor's form
    values = summary.get("codebook_values") or {}
    if values.get("planned"):
        codebook = (f"calibrated plan for {values['speed']:g}x fewer block-stack steps "
                    f"(plain codebook {codebook})")
    lines = [
        f"AdaCache [{summary['family']}] computed {summary['computed_steps']}/"
        f"{summary['steps_reached']} steps ({summary['estimated_speedup']:.2f}x fewer block-stack "
        f"steps), codebook {codebook} for {summary['codebook_steps']:g} steps, "
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
