"""What the benchmarks and scripts share: quality metrics, timing, report formatting, module
loading and the fixed schedules baselines compare with. Plain numpy/torch; boots no host
(tests/comfy_host.py does that).

Import it from a benchmark or script with ``sys.path.insert(0, str(ROOT / "benchmarks"))``.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def _array(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _data_range(ref: np.ndarray) -> float:
    """255 for 8-bit images, else the reference's own value range (latents)."""
    return 255.0 if ref.dtype == np.uint8 else float(ref.max() - ref.min())


def psnr(ref, out) -> float:
    """PSNR (dB) of ``out`` against ``ref`` (arrays or tensors); inf when identical."""
    ref, out = _array(ref), _array(out)
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(_data_range(ref) ** 2 / mse)


def ssim(ref, out, channel_axis: int = -1) -> float:
    """Mean SSIM over frames: ``ref``/``out`` are [T, H, W, C] (``channel_axis=-1``) or
    [T, C, H, W] (``channel_axis=1``)."""
    from skimage.metrics import structural_similarity

    ref, out = _array(ref), _array(out)
    axis = channel_axis - 1 if channel_axis > 0 else channel_axis  # per frame
    return float(np.mean([
        structural_similarity(a, b, channel_axis=axis, data_range=_data_range(ref), win_size=7)
        for a, b in zip(ref, out, strict=True)
    ]))


class FixedPlanner:
    """Places a run's compute steps where a benchmark fixes them, as a calibrated plan's
    ``plan.Planner`` places them: from any compute step the next one is the next of ``steps``
    (none after the last). The schedule computes step 0 and steps the run forces as always."""

    def __init__(self, steps, n_steps: int):
        self.steps, self.n_steps = sorted(set(steps)), n_steps

    def reference(self, step: int, gap: int) -> float:
        return 1.0  # the measured change does not move a fixed step

    def gap(self, step: int, ratio: float) -> int:
        i = bisect.bisect_right(self.steps, step)
        return max(1, (self.steps[i] if i < len(self.steps) else self.n_steps) - step)


def fixed_schedule(steps):
    """A codebook (preset "custom") whose runs compute exactly ``steps`` (and step 0): the
    uniform or searched baseline of a benchmark, run by the product's own schedule and reuse.
    Needs the pack imported (``comfyui_adacache``)."""
    return _fixed_schedule_class()((1.0,), (1,), steps=tuple(sorted(set(steps))))


@functools.cache
def _fixed_schedule_class():
    from comfyui_adacache.adacache import Codebook

    @dataclass(frozen=True)
    class FixedSchedule(Codebook):
        steps: tuple[int, ...] = ()

        def planner(self, run_positions, forced=frozenset(), check_interrupt=None,
                    weights=None):
            return FixedPlanner(self.steps, len(run_positions) - 1)

        def describe(self) -> str:
            return f"fixed schedule {list(self.steps)} (a benchmark's baseline)"

    return FixedSchedule


def median(values):
    """Median of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str = "{:.2f}", none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return spec.format(value)


def jsonable(value):
    """Strict JSON: infinities (identical outputs give PSNR inf) become the string 'inf'."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def machine_info(**extra) -> dict:
    """The machine a benchmark ran on, plus ``extra`` (host version, device, ...)."""
    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["cuda"] = torch.version.cuda
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    return {**info, **extra}


@contextmanager
def stopwatch():
    """``with stopwatch() as t: ...`` then ``t.wall`` / ``t.cpu`` (seconds)."""

    class Times:
        wall = cpu = 0.0

    times, wall, cpu = Times(), time.perf_counter(), time.process_time()
    try:
        yield times
    finally:
        times.wall, times.cpu = time.perf_counter() - wall, time.process_time() - cpu


def load_module(name: str, path: Path):
    """The module at ``path`` under ``name`` (loaded once): benchmark and script files are
    not a package."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
