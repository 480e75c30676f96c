"""Calibration: a calibrated plan (and MoReg constants) fitted to a model from recorded runs.

A *calibration run* computes every step and records, per step ``t``, the metric residual's
change over every gap ``k`` up to ``MAX_GAP`` (``gap_distances[t][k - 1]``, relative L1 per
step, as a cached run would measure it after a gap of ``k``; ``distances[t]`` is the gap-1
value) and the raw motion score ``m_t``. From a few such runs, ``calibrate`` returns a codebook
carrying the runs' mean change profile and a speed target (``adacache/plan.py``) and, for
video, MoReg constants normalised to the model. The rule and its measurements are in
``docs/calibration.md``.

    samples = [CalibrationSample(distances=(None, 0.21, ...), motions=(...),
                                 gap_distances=((), (0.21,), (0.09, 0.11), ...)), ...]
    result = calibrate(samples, speed=3.0, moreg=True)
    result.codebook, result.moreg, result.predicted_computed, result.describe()
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch

from .codebook import Codebook, CodebookError
from .metrics import relative_distance
from .moreg import MoRegSettings

MAX_GAP = 24  # longest gap a calibration run measures (covers 6x at 30 steps, 2x at 50)
SUBSAMPLE = 1 << 16  # metric residuals are kept as at most this many evenly strided values
MOREG_EXPONENT = 4.0  # calibrated MoReg: m' = clamp((m / reference) ** 4, 1, max_factor)


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class CalibrationSample:
    """One run recorded with every step computed; index = step (step 0 has no distance)."""

    distances: tuple[float | None, ...]
    motions: tuple[float | None, ...] = ()
    gap_distances: tuple[tuple[float | None, ...], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "distances", tuple(_finite_or_none(d) for d in self.distances))
        object.__setattr__(self, "motions", tuple(_finite_or_none(m) for m in self.motions))
        object.__setattr__(
            self, "gap_distances",
            tuple(tuple(_finite_or_none(d) for d in row) for row in self.gap_distances),
        )

    @property
    def n_steps(self) -> int:
        return len(self.distances)

    def to_dict(self) -> dict:
        return {"distances": list(self.distances), "motions": list(self.motions),
                "gap_distances": [list(row) for row in self.gap_distances]}

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationSample:
        return cls(tuple(data.get("distances", ())), tuple(data.get("motions", ())),
                   tuple(tuple(row) for row in data.get("gap_distances", ())))


class GapRecorder:
    """Keeps the last ``MAX_GAP`` metric residuals of one stream (subsampled) in a calibration
    run and returns, per step, their change over every gap."""

    def __init__(self, metric: str = "l1", max_gap: int = MAX_GAP):
        self.metric = metric
        self.history: deque[tuple[int, dict[int, torch.Tensor]]] = deque(maxlen=max_gap)

    def add(self, step: int, residuals: dict[int, torch.Tensor]) -> tuple[float | None, ...]:
        current = {p: _subsample(r) for p, r in residuals.items()}
        row: list[float | None] = []
        for earlier_step, earlier in reversed(self.history):
            gap = step - earlier_step
            if gap < 1 or set(earlier) != set(current):
                continue
            while len(row) < gap - 1:
                row.append(None)
            change = sum(
                relative_distance(current[p], earlier[p], self.metric) for p in current
            ) / len(current)
            row.append(change / gap)
        self.history.append((step, current))
        return tuple(row)


def _subsample(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.detach().flatten()
    stride = max(1, math.ceil(flat.numel() / SUBSAMPLE))
    return flat[::stride].float().clone()


@dataclass
class CalibrationResult:
    codebook: Codebook
    moreg: MoRegSettings | None
    speed: float  # requested block-stack speedup (steps / computed steps)
    predicted_computed: list[int] = field(default_factory=list)  # per sample, on its trace
    n_steps: int = 0

    def describe(self) -> str:
        counts = ", ".join(str(c) for c in self.predicted_computed)
        text = (
            f"calibrated plan for {self.speed:g}x fewer block-stack steps at {self.n_steps} "
            f"steps: on the {len(self.predicted_computed)} calibration run(s) it computes "
            f"{counts} of {self.n_steps} steps (predicted); plain codebook "
            f"{self.codebook.editor_text()}"
        )
        if self.moreg is not None:
            text += "; MoReg normalised to the runs' motion per step"
        return text


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _gap_profile(samples: list[CalibrationSample], n_steps: int) -> tuple[tuple[float, ...], ...]:
    """Mean change per step and gap over the runs; gaps a run did not record fall back to the
    longest shorter gap (or the per-step distance)."""
    rows: list[tuple[float, ...]] = [()]
    last_known = None
    for step in range(1, n_steps):
        gap_rows = [s.gap_distances[step] if step < len(s.gap_distances) else () for s in samples]
        per_step = _mean(s.distances[step] for s in samples if step < len(s.distances))
        row: list[float] = []
        for gap in range(1, step + 1):
            value = _mean(r[gap - 1] for r in gap_rows if gap - 1 < len(r))
            if value is None:
                value = row[-1] if row else per_step
            if value is None:
                value = last_known if last_known is not None else 0.0
            row.append(float(value))
            if gap >= MAX_GAP:
                break
        last_known = row[0]
        rows.append(tuple(row))
    return tuple(rows)


def calibrate(
    samples: list[CalibrationSample], speed: float = 3.0, moreg: bool = False,
    max_factor: float = 4.0,
) -> CalibrationResult:
    """A calibrated plan computing about ``1 / speed`` of the steps on the recorded runs.

    The codebook carries the runs' mean change profile and the speed target; its
    thresholds/rates are the supplement's uniform split of the observed range over the gaps
    the plan uses (shown in the editor; used if the plan is dropped). With ``moreg``, MoReg's
    reference motion per step is the runs' mean motion score: a video moving no more than the
    calibration runs gets no extra compute.
    """
    from .plan import Planner
    from .schedule import preview_schedule

    if not samples:
        raise CodebookError("calibration needs at least one recorded run")
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(
        speed
    ) or speed < 1:
        raise CodebookError(f"speed target {speed!r} must be a finite number >= 1")
    n_steps = min(s.n_steps for s in samples)
    if any(s.n_steps != n_steps for s in samples):
        samples = [s for s in samples if s.n_steps == n_steps]
    if n_steps < 5:
        raise CodebookError(f"calibration runs have {n_steps} steps; need at least 5")
    values = [d for s in samples for d in s.distances[1:] if d is not None and d > 0]
    if len(values) < 2:
        raise CodebookError("calibration runs recorded no distances (was every step computed?)")
    profile = _gap_profile(samples, n_steps)
    baseline = Planner.for_run(profile, n_steps, float(speed)).baseline_steps()
    plain = _plain_codebook(values, baseline)
    codebook = Codebook(plain.thresholds, plain.rates, profile, float(speed))
    moreg_settings = None
    if moreg:
        motions = [_mean(s.motions[i] for s in samples if i < len(s.motions))
                   for i in range(n_steps)]
        known = [m for m in motions if m is not None and m > 0]
        if known:
            reference = tuple(max(m if m is not None else known[0], 1e-6) for m in motions)
            moreg_settings = MoRegSettings(
                enabled=True, norm_p=MOREG_EXPONENT, norm_b=1.0, gradient_scale=0.0,
                reference=reference, max_factor=max_factor,
            )
    predicted = [
        len(preview_schedule(list(s.distances), codebook, n_steps, s.gap_distances or None))
        for s in samples
    ]
    return CalibrationResult(codebook, moreg_settings, float(speed), predicted, n_steps)


def _plain_codebook(values: list[float], baseline: list[int]) -> Codebook:
    """Supplement A.2's uniform split of the observed range, over the plan's gap lengths."""
    steps = baseline[1:]
    gaps = sorted({b - a for a, b in zip(steps[:-1], steps[1:], strict=True)} | {1}, reverse=True)
    lo, hi = min(values), max(values)
    if len(gaps) < 2 or hi <= lo:
        return Codebook((max(1.0, 2 * hi),), (gaps[0],))
    rounded: list[float] = []
    for i in range(len(gaps) - 1):  # 4 significant digits, kept strictly increasing
        value = float(f"{lo + (hi - lo) * (i + 1) / len(gaps):.4g}")
        rounded.append(value if not rounded or value > rounded[-1] else rounded[-1] * 1.001)
    rounded.append(max(1.0, 2 * hi, rounded[-1] * 2))
    return Codebook(tuple(rounded), tuple(gaps))
