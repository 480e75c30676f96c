"""Motion Regularization: scales the distance by normalised motion and its gradient."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .interp import fractional_index, lerp


@dataclass(frozen=True)
class MoRegSettings:
    """Reference constants by default (algorithm.md section 5)."""

    enabled: bool = True
    strides: tuple[int, ...] = (1,)
    norm_a: float = 0.385  # m' = (m / a) ** p / b
    norm_p: float = 8.0
    norm_b: float = 1.0
    gradient_scale: float = 10.0  # mg = g * (m' - m'_prev) / k
    window_start: float = 0.1  # fractions of the whole schedule; see window_steps
    window_end: float = 0.9
    # Calibrated MoReg (ours): the model's typical motion score per step from calibration runs.
    # When set, m' = clamp((m / reference[step]) ** p / b, 1, max_factor): a video moving no
    # more than the calibration runs gets factor 1 (no extra compute), a faster one more, in
    # proportion to its motion, and never more than max_factor.
    reference: tuple[float, ...] = ()
    max_factor: float = 4.0
    # Where each reference entry sits in the noise schedule (1 = noise .. 0 = clean; plan.py);
    # empty: the entries are spread evenly over the whole schedule.
    reference_positions: tuple[float, ...] = ()

    def __post_init__(self):
        for name in ("norm_a", "norm_p", "norm_b", "gradient_scale", "window_start",
                     "window_end", "max_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value
            ):
                raise ValueError(f"MoReg {name} ({value!r}) must be a finite number")
        for i, value in enumerate(self.reference):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"MoReg reference entry {i} ({value!r}) must be a number > 0")
        if self.reference_positions and len(self.reference_positions) != len(self.reference):
            raise ValueError(
                f"MoReg reference_positions has {len(self.reference_positions)} entries for "
                f"{len(self.reference)} reference values"
            )
        for i, value in enumerate(self.reference_positions):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"MoReg reference position {i} ({value!r}) must be in 0..1")
        if self.max_factor < 1:
            raise ValueError(f"MoReg max_factor ({self.max_factor!r}) must be >= 1")
        if not self.strides or any(int(s) != s or s < 1 for s in self.strides):
            raise ValueError(f"MoReg strides must be integers >= 1, got {self.strides!r}")
        if self.norm_a <= 0 or self.norm_b <= 0:
            raise ValueError("MoReg norm_a and norm_b must be > 0")
        if not 0.0 <= self.window_start <= self.window_end <= 1.0:
            raise ValueError(
                f"MoReg window must satisfy 0 <= start <= end <= 1, got "
                f"{self.window_start}..{self.window_end}"
            )

    def window_steps(self, n_steps: int) -> tuple[int, int]:
        """The 0-based steps ``[start, end)`` of an ``n_steps`` schedule where MoReg acts.

        The reference counts steps from 1 and applies MoReg on steps a..b inclusive: (10, 90)
        at 100 steps, (4, 26) at 30. Here a = round(window_start * N) and
        b = round(window_end * N), kept off the first three and the last four steps
        (a >= 4, b <= N - 4), which reproduces both reference configurations.
        """
        first = max(round(self.window_start * n_steps), 4)
        last = min(round(self.window_end * n_steps), n_steps - 4)
        return first - 1, max(last, first - 1)


@dataclass
class MotionRegularizer:
    """Per-run MoReg state: turns a motion score into the factor ``m' + |mg|``."""

    settings: MoRegSettings
    n_steps: int
    previous_normalized: float | None = field(default=None)

    def factor(
        self, step: int, motion: float | None, gap: int, position: float | None = None
    ) -> tuple[float, float | None]:
        """Returns (factor to multiply the distance by, normalised motion m' or None).

        ``step`` counts in the whole schedule (the window's place); ``position`` is the step's
        noise-schedule position, where a calibrated reference is read. Outside the window the
        gradient's memory is reset (ours: the reference keeps its previous m' there, which
        gives a gradient spike on entering and leaving the window).
        """
        start, end = self.settings.window_steps(self.n_steps)
        if motion is None or not (start <= step < end):
            self.previous_normalized = None
            return 1.0, None
        s = self.settings
        if s.reference:
            reference = _reference_at(s, step, self.n_steps, position)
            normalized = min(max((motion / reference) ** s.norm_p / s.norm_b, 1.0), s.max_factor)
        else:
            normalized = (motion / s.norm_a) ** s.norm_p / s.norm_b
        gradient = 0.0
        if self.previous_normalized is not None:
            gradient = s.gradient_scale * (normalized - self.previous_normalized) / max(gap, 1)
        self.previous_normalized = normalized
        factor = normalized + abs(gradient)
        if s.reference:
            factor = min(factor, s.max_factor)
        return factor, normalized


def _reference_at(
    settings: MoRegSettings, step: int, n_steps: int, position: float | None
) -> float:
    """The calibrated motion at the same noise-schedule position (or, without positions, the
    same fraction of the schedule); motion is not per step, so no density scaling."""
    reference = settings.reference
    if settings.reference_positions and position is not None:
        return lerp(reference, fractional_index(settings.reference_positions, position))
    return lerp(reference, step * (len(reference) - 1) / max(n_steps - 1, 1))
