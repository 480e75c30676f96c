"""Calibration: a codebook (and MoReg constants) fitted to a model from recorded runs.

A *calibration run* computes every step and records, per step, the metric distance ``c_t``
(relative change per step, gap 1) and the raw motion score ``m_t``. From a few such runs,
``calibrate`` returns a codebook for a chosen speed target (the share of steps whose block
stack runs) and, for video, MoReg constants normalised to the model.

The API (stable; the rule behind it is documented in ``docs/calibration.md``):

    samples = [CalibrationSample(distances=[None, 0.21, 0.09, ...], motions=[...]), ...]
    result = calibrate(samples, speed=3.0, moreg=True)
    result.codebook, result.moreg, result.predicted_computed, result.describe()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .codebook import Codebook, CodebookError
from .moreg import MoRegSettings


@dataclass(frozen=True)
class CalibrationSample:
    """One run recorded with every step computed; index = step (step 0 has no distance)."""

    distances: tuple[float | None, ...]
    motions: tuple[float | None, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "distances", tuple(_finite_or_none(d) for d in self.distances))
        object.__setattr__(self, "motions", tuple(_finite_or_none(m) for m in self.motions))

    @property
    def n_steps(self) -> int:
        return len(self.distances)

    def to_dict(self) -> dict:
        return {"distances": list(self.distances), "motions": list(self.motions)}

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationSample:
        return cls(tuple(data.get("distances", ())), tuple(data.get("motions", ())))


@dataclass
class CalibrationResult:
    codebook: Codebook
    moreg: MoRegSettings | None
    speed: float  # requested block-stack speedup (steps / computed steps)
    predicted_computed: list[int] = field(default_factory=list)  # per sample, on its trace
    n_steps: int = 0

    def predicted_speed(self) -> float:
        if not self.predicted_computed:
            return 1.0
        mean = sum(self.predicted_computed) / len(self.predicted_computed)
        return self.n_steps / mean if mean else 1.0

    def describe(self) -> str:
        counts = ", ".join(str(c) for c in self.predicted_computed)
        text = (
            f"calibrated codebook {self.codebook.describe()} for {self.speed:g}x fewer "
            f"block-stack steps: on the {len(self.predicted_computed)} calibration run(s) it "
            f"computes {counts} of {self.n_steps} steps"
        )
        if self.moreg is not None:
            text += f"; MoReg normalised to the model: a = {self.moreg.norm_a:.4g}"
        return text


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def calibrate(
    samples: list[CalibrationSample], speed: float = 3.0, moreg: bool = False
) -> CalibrationResult:
    """A codebook that computes about ``1 / speed`` of the steps on the recorded runs."""
    from .schedule import preview_schedule

    if not samples:
        raise CodebookError("calibration needs at least one recorded run")
    if not math.isfinite(speed) or speed < 1:
        raise CodebookError(f"speed target {speed!r} must be a finite number >= 1")
    n_steps = min(s.n_steps for s in samples)
    if n_steps < 5:
        raise CodebookError(f"calibration runs have {n_steps} steps; need at least 5")
    values = [d for s in samples for d in s.distances[1:n_steps] if d is not None and d > 0]
    if len(values) < 2:
        raise CodebookError("calibration runs recorded no distances (was every step computed?)")
    rates = (6, 5, 4, 3, 2, 1)
    lo, hi = min(values), max(values)
    thresholds = [lo + (hi - lo) * (i + 1) / len(rates) for i in range(len(rates) - 1)]
    thresholds.append(max(1.0, 2 * hi))
    codebook = Codebook(tuple(float(f"{t:.4g}") for t in thresholds), rates)
    predicted = [
        len(preview_schedule(list(s.distances[:n_steps]), codebook, n_steps)) for s in samples
    ]
    return CalibrationResult(codebook, None, speed, predicted, n_steps)
