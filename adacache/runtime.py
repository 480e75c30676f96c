"""One sampling run of AdaCache: per-stream caches and the block-stack hooks.

The ComfyUI layer calls ``begin_call``/``end_call`` around every model evaluation, routes every
block of the stack through ``block``, the stack output through ``stack_output`` and side
modules between blocks through ``silenced_module``. Pure torch; interrupts and logging are
injected.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .calibration import CalibrationSample, GapRecorder
from .codebook import Codebook, CodebookError, calibrated_codebook, preset_codebook
from .families import WHOLE, Family
from .metrics import METRICS, motion_score, relative_distance
from .moreg import MoRegSettings
from .schedule import CacheSchedule, StepRecord, step_of_sigma

COMPUTE, REUSE, PASSTHROUGH = "compute", "reuse", "passthrough"
PRESET_CHOICES = ("fast", "medium", "slow", "custom", "calibrate")
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
    codebook: Codebook | None = None  # used when preset == "custom"
    moreg: MoRegSettings | None = None
    metric: str = "l1"
    metric_blocks: str = "middle"
    start_percent: float = 0.0  # caching allowed from this fraction of the noise schedule ...
    end_percent: float = 1.0  # ... up to this one
    verbose: bool = False
    offload_cache: bool = False  # keep cached residuals on the offload device (CPU memory)
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
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError("need 0 <= start_percent <= end_percent <= 1")

    def codebook_for(self, steps: float) -> Codebook:
        if self.preset == "calibrate":
            return CALIBRATION_CODEBOOK
        if self.preset == "custom":
            return self.codebook
        return preset_codebook(self.preset, steps)


@dataclass
class StreamCache:
    """What one stream (one cond entry: positive, negative, ...) keeps between steps."""

    residual: dict[str, torch.Tensor] | None = None  # stack output - input, per carried key
    metric: dict[int, torch.Tensor] = field(default_factory=dict)  # metric-block residuals
    metric_step: int | None = None

    def nbytes(self) -> int:
        tensors = [*(self.residual or {}).values(), *self.metric.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class CallContext:
    mode: str
    stream_keys: list
    latent_shape: tuple[int, ...]
    record: StepRecord | None = None
    stack_input: dict[str, torch.Tensor] | None = None
    metric_residuals: dict[int, torch.Tensor] = field(default_factory=dict)
    tail_tokens: int = 0  # tokens after the video tokens (Family.tail_tokens), not frames


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
    ):
        self.config = config
        self.family = family
        self.n_blocks = 1 if family.mode == WHOLE else n_blocks
        spec = "first" if family.mode == WHOLE else config.metric_blocks
        self.metric_positions = parse_metric_blocks(spec, self.n_blocks)
        n_steps = max(len(sigmas) - 1, 1)
        self.steps_for_codebook = steps_for_codebook or n_steps
        self.codebook = config.codebook_for(self.steps_for_codebook)
        self.schedule = CacheSchedule(
            sigmas, self.codebook, config.moreg, cache_sigma_range, config.compute_steps
        )
        self.check_interrupt = check_interrupt
        self.cache_device = cache_device  # None: keep caches where they were computed
        self.streams: dict[object, StreamCache] = {}
        self.calibrating = config.preset == "calibrate"
        self.gap_recorders: dict[object, GapRecorder] = {}
        self.gap_rows: dict[int, list[tuple]] = {}  # step -> one row per stream
        self.call: CallContext | None = None
        self.stack_runs = 0  # calls that ran the full block stack
        self.reused_calls = 0
        self.passthrough_calls = 0
        self.peak_cache_bytes = 0
        self.warnings: list[str] = []
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

    # -- calls -----------------------------------------------------------------------------
    def begin_call(
        self,
        sigma: float,
        stream_keys: list,
        latent_shape,
        stack_intact=True,
        compute_reason=None,
        tail_tokens: int = 0,
    ):
        """Starts one model evaluation; returns its mode.

        ``compute_reason``: this evaluation must run the stack (e.g. a ControlNet adds hints
        between blocks, which a stored residual would count twice).
        """
        if not stack_intact:
            # Another patch replaced some of our blocks for this call (e.g. SkipLayerGuidance's
            # extra pass): run it exactly as asked and keep nothing from it.
            self.passthrough_calls += 1
            self.call = CallContext(PASSTHROUGH, list(stream_keys), tuple(latent_shape))
            return PASSTHROUGH
        step = step_of_sigma(self.schedule.sigmas, sigma)
        record = self.schedule.enter(step)
        mode = COMPUTE if record.computed else REUSE
        self.call = CallContext(
            mode, list(stream_keys), tuple(latent_shape), record, tail_tokens=tail_tokens
        )
        if compute_reason and mode == REUSE:
            self._force_compute(self.call, compute_reason)
            note = f"{compute_reason}: those steps are computed instead of reused"
            if note not in self.warnings:
                self.warnings.append(note)
        return self.call.mode

    def end_call(self) -> None:
        call, self.call = self.call, None
        if call is None or call.mode == PASSTHROUGH:
            return
        if call.mode == REUSE:
            self.reused_calls += 1
        total = sum(s.nbytes() for s in self.streams.values())
        self.peak_cache_bytes = max(self.peak_cache_bytes, total)

    def abort_call(self) -> None:
        self.call = None

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
            cached = self._cached_residual(carried)
            if cached is None:  # no usable cache for some stream: never reuse stale data
                self._force_compute(call)
                return self.block(position, args, run_inner)
            self.check_interrupt()
            if family.reuse_runs_first_block:
                run_inner(args)  # for the state it leaves behind (Family.reuse_runs_first_block)
            return family.with_carried(args, {k: v + cached[k] for k, v in carried.items()})
        if position == 0:
            call.stack_input = family.carried(args)
            self.stack_runs += 1
        out = run_inner(args)
        if position in self.metric_positions:
            call.metric_residuals[position] = family.metric_part(out) - family.metric_part(args)
        if family.output_module is None and position == self.n_blocks - 1:
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
            cached = None if view is None else self._cached_residual({"out": view})
            if cached is None:
                self._force_compute(call)
                return self.whole_model(x, run_inner)
            self.check_interrupt()
            return view + cached["out"]
        self.stack_runs += 1
        out = run_inner()
        view = _crop(x, out.shape[1:])
        if view is None:  # output not a crop of the input: nothing we can cache
            return out
        call.stack_input = {"out": view}
        call.metric_residuals[0] = out - view
        self.stack_output(out)
        return out

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
        for i, stream_key in enumerate(call.stream_keys):
            stream = self.streams.setdefault(stream_key, StreamCache())
            stream.residual = {k: self._store(r[i]) for k, r in residuals.items()}
            current = {p: self._store(m[i]) for p, m in metrics.items()}
            if not current or stream.metric_step == step:
                continue  # later evaluations of a step refresh only the residual
            if stream.metric_step is not None and set(stream.metric) == set(current) and all(
                stream.metric[p].shape == current[p].shape for p in current
            ):
                self._measure(
                    stream, current, step, call.latent_shape, img_tokens, call.tail_tokens
                )
            stream.metric, stream.metric_step = current, step
            if self.calibrating:
                recorder = self.gap_recorders.setdefault(
                    stream_key, GapRecorder(self.config.metric)
                )
                self.gap_rows.setdefault(step, []).append(recorder.add(step, current))

    def _measure(
        self, stream: StreamCache, current: dict, step: int, latent_shape, img_tokens=None,
        tail_tokens=0,
    ) -> None:
        gap = step - stream.metric_step
        distance = sum(
            relative_distance(current[p], stream.metric[p], self.config.metric) for p in current
        ) / (len(current) * max(gap, 1))
        motion = None
        if self.schedule.moreg is not None or self.calibrating:
            hidden = current[self.metric_positions[0]]
            frames = self.family.frames(hidden, latent_shape, img_tokens, tail_tokens)
            if frames is not None:
                strides = self.config.moreg.strides if self.config.moreg else (1,)
                motion = motion_score(frames, strides)
        self.schedule.measure(distance, gap, motion)

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
    def _store(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        if self.cache_device is not None and tensor.device != self.cache_device:
            return tensor.to(self.cache_device)
        return tensor

    @staticmethod
    def _chunks(tensor: torch.Tensor, keys: list) -> list[torch.Tensor]:
        return list(tensor.chunk(len(keys), dim=0)) if len(keys) > 1 else [tensor]

    def _cached_residual(self, current: dict[str, torch.Tensor]) -> dict | None:
        """The stored residuals of this call's streams, batched like ``current``, or None."""
        keys = self.call.stream_keys
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
                parts.append(r.to(device=tensor.device, dtype=tensor.dtype))
            out[name] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        return out

    def _force_compute(self, call: CallContext, reason: str = "no usable cache") -> None:
        call.mode = COMPUTE
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
        return CalibrationSample(
            tuple(r.distance for r in trace), tuple(r.motion for r in trace), tuple(rows)
        )

    # -- reporting -------------------------------------------------------------------------
    def finish(self) -> dict:
        self.schedule.close()
        self.call = None
        summary = self.summary()
        self.streams.clear()
        return summary

    def summary(self) -> dict:
        s = self.schedule
        reached = [r for r in s.trace if r.computed is not None]
        computed = len(s.computed_steps)
        distances = [r.distance for r in s.trace if r.distance is not None]
        calibrated = calibrated_codebook(distances, self.codebook.rates)
        warnings = list(self.warnings)
        if reached and len(reached) >= 5 and not s.reused_steps and distances:
            warnings.append(
                f"no step was reused: every distance ({min(distances):.4g}..{max(distances):.4g}"
                f" per step) selected cache rate 1 in {self.codebook.describe()}; pick a faster "
                f"preset or a codebook calibrated to this model, e.g. {calibrated.describe()}"
                if calibrated else "no step was reused"
            )
        return {
            "family": self.family.name,
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
            "codebook": self.codebook.describe(),
            "codebook_steps": round(self.steps_for_codebook, 2),
            "metric": self.config.metric,
            "metric_blocks": list(self.metric_positions),
            "moreg": self.schedule.moreg is not None,
            "peak_cache_bytes": self.peak_cache_bytes,
            "streams": len(self.streams),
            "distance_range": [min(distances), max(distances)] if distances else None,
            "calibrated_codebook": calibrated.describe() if calibrated else None,
            "cache_sigma_range": [
                v if math.isfinite(v) else None for v in (s.cache_sigma_high, s.cache_sigma_low)
            ],
            "warnings": warnings,
            "calibration_sample": self.calibration_sample().to_dict() if self.calibrating else None,
            "trace": [r.as_dict() for r in s.trace],
        }


def _crop(x: torch.Tensor, shape) -> torch.Tensor | None:
    """``x`` cut to ``[batch, *shape]`` from the start of each dim (extra channels, padding)."""
    if x.ndim != len(shape) + 1 or any(a < b for a, b in zip(x.shape[1:], shape, strict=True)):
        return None
    return x[(slice(None), *(slice(0, n) for n in shape))]


def format_summary(summary: dict) -> str:
    lines = [
        f"AdaCache [{summary['family']}] computed {summary['computed_steps']}/"
        f"{summary['steps_reached']} steps ({summary['estimated_speedup']:.2f}x fewer block-stack "
        f"steps), codebook {summary['codebook']} for {summary['codebook_steps']:g} steps, "
        f"metric {summary['metric']} @ blocks {summary['metric_blocks']}, "
        f"MoReg {'on' if summary['moreg'] else 'off'}",
        f"AdaCache schedule  [{summary['pattern']}]  (C computed, . reused)",
        f"AdaCache cache memory peak {summary['peak_cache_bytes'] / 2**20:.1f} MiB "
        f"for {summary['streams']} stream(s)",
    ]
    if summary["distance_range"]:
        lo, hi = summary["distance_range"]
        lines.append(
            f"AdaCache distances per step ranged {lo:.4g}..{hi:.4g}; a codebook calibrated to "
            f"this run (supplement A.2): {summary['calibrated_codebook']}"
        )
    lines += [f"AdaCache warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines)


def format_trace(summary: dict) -> str:
    rows = ["step  sigma     mode      reason           distance  motion   factor  rate"]
    for r in summary["trace"]:
        if r["computed"] is None:
            continue
        def num(v, fmt="{:.4f}"):
            return fmt.format(v) if v is not None else "-"
        rows.append(
            f"{r['step']:>4}  {r['sigma']:<8.4f}  {'compute' if r['computed'] else 'reuse':<8}  "
            f"{r['reason']:<15}  {num(r['distance']):>8}  {num(r['motion']):>6}  "
            f"{num(r['moreg_factor'], '{:.3f}'):>6}  {num(r['rate'], '{}'):>4}"
        )
    return "\n".join(rows)
