"""The calibrated plan (ours): the next compute step planned on the model's change profile.

The paper looks the distance ``c_t`` up in a codebook. That works when the thresholds fit the
model; when they do not, every video gets the same schedule. A calibration run (every step
computed) gives more than a range of distances: the model's typical change of the metric
residual at every step ``s`` and over every gap ``k``, ``profile[s][k]`` (relative L1 of
``r_s - r_{s-k}``, per step, as a cached run measures it after a gap of ``k``).

Error model (measured on the demo model, ``docs/calibration.md``): reusing at step ``s`` the
residual stored at compute step ``t`` costs about the staleness of the residual,
``(s - t) * profile[s][s - t]``; a cache run costs the sum over its reused steps.

At a compute step ``t`` reached after a gap ``k``, the video's own change is compared with the
profile, ``ratio = c_t / profile[t][k]`` (MoReg multiplies ``c_t`` as usual). The plan then
minimises, over the remaining steps up to the always-computed final steps,

    ratio * (predicted reuse error on the profile) + cost_per_compute * (number of computes)

(an exact dynamic programme, O(N^2) per compute step), and takes its first gap as the rate. A
video that changes faster than the profile gets more computes; the forced final steps and the
profile's shape (where the model changes little: long gaps) are planned for.
``cost_per_compute`` is fitted at the start of each run so that the profile itself (ratio 1)
computes at most ``n_steps / speed`` steps.

Profiles are stored at the calibration's step count and resampled to a run's: the same
fraction of the schedule and of the gap, per-step changes scaled by the step density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GapProfile = tuple[tuple[float, ...], ...]  # [step][gap - 1]; row 0 is empty


def lerp(values, x: float) -> float:
    """Linear interpolation in a non-empty sequence at fractional index ``x`` (clamped)."""
    x = min(max(x, 0.0), len(values) - 1.0)
    i = min(int(math.floor(x)), len(values) - 1)
    j = min(i + 1, len(values) - 1)
    return values[i] * (1 - (x - i)) + values[j] * (x - i)


def resample_profile(profile: GapProfile, n_steps: int) -> list[list[float]]:
    """``profile`` (calibrated at ``len(profile)`` steps) for a run of ``n_steps`` steps."""
    cal_steps = len(profile)
    if cal_steps == n_steps:
        return [[float(v) for v in row] for row in profile]
    scale = (cal_steps - 2) / max(n_steps - 2, 1)  # step 1 -> 1, second to last -> same
    out: list[list[float]] = [[]]
    for step in range(1, n_steps):
        x = 1 + (step - 1) * scale
        lower = profile[min(int(math.floor(x)), cal_steps - 1)]
        upper = profile[min(int(math.floor(x)) + 1, cal_steps - 1)] or lower
        frac = x - math.floor(x)
        row = []
        for gap in range(1, step + 1):
            y = (gap * scale) - 1  # index of the same share of the schedule
            value = lerp(lower, y) * (1 - frac) + lerp(upper, y) * frac
            row.append(value * cal_steps / n_steps)
        out.append(row)
    return out


@dataclass
class Planner:
    """Plans gaps on a resampled profile for one run of ``n_steps`` steps."""

    profile: list[list[float]]  # [step][gap - 1], for this run's step count
    n_steps: int
    speed: float
    cost_per_compute: float = 0.0
    _error: list[list[float]] = field(default_factory=list, repr=False)

    @classmethod
    def for_run(cls, profile: GapProfile, n_steps: int, speed: float) -> Planner:
        planner = cls(resample_profile(profile, n_steps), n_steps, float(speed))
        planner.cost_per_compute = planner._fit_cost()
        return planner

    def __post_init__(self):
        # _error[t][stop - t]: predicted error of computing at t and reusing until stop
        n = self.n_steps
        self._error = []
        for start in range(n):
            row, total = [0.0, 0.0], 0.0
            for step in range(start + 1, n):
                total += (step - start) * self.reference(step, step - start)
                row.append(total)
            self._error.append(row)

    def reference(self, step: int, gap: int) -> float:
        """The profile's change per step at ``step``, measured over ``gap`` steps."""
        row = self.profile[step] if 0 < step < len(self.profile) else ()
        if not row:
            return 0.0
        return row[min(max(gap, 1), len(row)) - 1]

    # -- the plan --------------------------------------------------------------------------
    def _plan_from(self, start: int, ratio: float, cost: float, final: int | None = None
                   ) -> list[int]:
        """Optimal compute steps after ``start``, ending at the first always-computed final step
        (``final``: of a slice of the schedule, e.g. one expert's KSamplerAdvanced part)."""
        final = self.n_steps - 2 if final is None else min(final, self.n_steps - 2)
        if start >= final:
            return []
        best: dict[int, tuple[float, int]] = {final: (0.0, final)}
        for p in range(final - 1, start - 1, -1):
            errors = self._error[p]
            best[p] = min(
                (ratio * errors[q - p] + (cost if q < final else 0.0) + best[q][0], q)
                for q in range(p + 1, final + 1)
            )
        steps, p = [], start
        while p < final:
            p = best[p][1]
            steps.append(p)
        return steps

    def gap(self, step: int, ratio: float, final: int | None = None) -> int:
        """Steps until the next compute, planned at compute step ``step`` (of the whole
        schedule; ``final``: the first always-computed final step of the part being run)."""
        if not math.isfinite(ratio) or ratio <= 0:
            ratio = 1.0
        planned = self._plan_from(step, ratio, self.cost_per_compute, final)
        return max(1, (planned[0] if planned else step + 1) - step)

    def baseline_steps(self, cost: float | None = None) -> list[int]:
        """The computed steps the plan gives on the profile itself (ratio 1)."""
        cost = self.cost_per_compute if cost is None else cost
        if self.n_steps <= 4:
            return list(range(self.n_steps))
        return [0, 1, *self._plan_from(1, 1.0, cost), self.n_steps - 1]

    def _fit_cost(self) -> float:
        target = self.n_steps / max(self.speed, 1.0)
        low, high = 1e-9, 1e9
        if len(self.baseline_steps(low)) <= target:
            return low
        for _ in range(60):
            mid = math.sqrt(low * high)
            if len(self.baseline_steps(mid)) > target:
                low = mid
            else:
                high = mid
        return high
