"""The calibrated plan (ours): the next compute step planned on the model's change profile.

The paper looks the distance ``c_t`` up in a codebook. That works when the thresholds fit the
model; when they do not, every video gets the same schedule. A calibration run (every step
computed) gives more than a range of distances: the model's typical change of the metric
residual at every step ``s`` and over every gap ``k``, ``profile[s][k - 1]`` (relative L1 of
``r_s - r_{s-k}``, per step, as a cached run measures it after a gap of ``k``), and where each
of its steps sits in the noise schedule (``positions``: 1 = pure noise, 0 = clean).

Error model (measured on the demo model, ``docs/calibration.md``): reusing at step ``s`` the
residual stored at compute step ``t`` costs about the staleness of the residual,
``(s - t) * reference(s, s - t)``; a cache run costs the sum over its reused steps.

At a compute step ``t`` reached after a gap ``k``, the video's own change is compared with the
profile, ``ratio = c_t / reference(t, k)`` (MoReg multiplies ``c_t`` as usual; the ratio is
clamped to ``RATIO_RANGE``). The plan then minimises, over the rest of the run,

    ratio ** 2 * (predicted reuse error on the profile) + cost_per_compute * (number of computes)

(an exact dynamic programme over gaps of at most ``max_gap`` steps) and takes its first gap as
the rate. Only step 0 is always computed (there is nothing to reuse before it) and steps the
run forces (outside start/end percent) are never jumped over; the plan places every other
compute, the second and the final steps included (ours: the paper computes the first two and
last two steps). ``cost_per_compute`` is fitted at the start of each run so that the profile
itself (ratio 1) computes at most ``n_steps / speed`` steps, forced steps counted.

A run maps onto the profile by noise-schedule position, not by step number: run step ``s`` at
position ``q_s`` is the calibration's fractional step ``x(q_s)``, and a gap of ``k`` run steps
spans ``x(q_s) - x(q_{s-k})`` calibration steps. Other step counts, schedulers, shifts and
KSamplerAdvanced slices (a part of the schedule) therefore read the profile where they are.

``CalibratedPlan`` is the plan as data (fitted by ``calibration.calibrate``, saved as a file,
run by AdaCache Apply); ``Planner`` plans one run on it. A plan is not a codebook: it carries
one (the plain codebook calibrated from the same runs) only to show and edit it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from .codebook import Codebook, CodebookError, number, parse_json
from .interp import fractional_index, lerp
from .moreg import MoRegSettings

GapProfile = tuple[tuple[float, ...], ...]  # [step][gap - 1]; row 0 is empty
RATIO_RANGE = (0.5, 2.0)  # a video is planned as changing 1/2x .. 2x as fast as the profile
# The plan's error weight is ratio ** 2: computes then scale about like the ratio (a constant
# quality per video), where ratio ** 1 (a constant trade-off) moves them only like its root.
RATIO_POWER = 2.0
# A reused step's error is weighted by its share of the noise schedule, (n * dsigma / span) **
# 0.5: a stale prediction moves the sample by its step size, and later steps correct part of
# it. Both exponents were chosen on the demo model (docs/calibration.md) and are reported on
# the zoo models it was not tuned on (benchmarks/bench_quality.py --model).
STEP_WEIGHT_POWER = 0.5


def even_positions(n_steps: int) -> tuple[float, ...]:
    """Positions of an evenly spaced schedule of ``n_steps`` steps (and its end)."""
    return tuple(1.0 - i / max(n_steps, 1) for i in range(n_steps + 1))


def step_weights(sigmas) -> list[float] | None:
    """Each step's error weight from its sigma step (1 everywhere on an even schedule)."""
    n = len(sigmas) - 1
    span = float(sigmas[0]) - float(sigmas[-1]) if n >= 1 else 0.0
    if span <= 0:
        return None
    return [max((float(sigmas[i]) - float(sigmas[i + 1])) * n / span, 1e-3) ** STEP_WEIGHT_POWER
            for i in range(n)]


def default_max_gap(speed: float) -> int:
    """Longest gap a plan may take: 2.5x the mean gap at the speed target (at least 3)."""
    return max(3, math.ceil(2.5 * max(speed, 1.0)))


class Planner:
    """Plans gaps on a calibrated profile for one run (``run_positions``: the position of each
    of the run's steps and of its end)."""

    def __init__(
        self,
        profile: GapProfile,
        speed: float,
        run_positions,
        calibration_positions=(),
        forced: frozenset[int] | set[int] = frozenset(),
        max_gap: int | None = None,
        check_interrupt: Callable[[], None] | None = None,
        weights=None,
    ):
        self.profile = profile
        self.speed = float(speed)
        self.n_steps = max(len(run_positions) - 1, 1)
        self.max_gap = max(1, max_gap or default_max_gap(self.speed))
        self.check_interrupt = check_interrupt or (lambda: None)
        self.forced = frozenset(s for s in forced if 0 < s < self.n_steps)
        if weights is not None and len(weights) != self.n_steps:
            weights = None  # not this run's steps: unweighted
        cal = tuple(calibration_positions) or even_positions(len(profile))
        index = [fractional_index(cal, float(q)) for q in run_positions]
        self._measured_span = max(len(row) for row in profile)
        # reference[s][k]: the profile's change per run step at step s over a gap of k steps
        self._reference = [[0.0] * (self.max_gap + 1) for _ in range(self.n_steps + 1)]
        for s in range(1, self.n_steps):
            for k in range(1, min(self.max_gap, s) + 1):
                span = index[s] - index[s - k]
                self._reference[s][k] = self._profile_at(index[s], span) * max(span, 0.0) / k
        # _error[p][k]: predicted error of computing at p and reusing until p + k (exclusive)
        self._error = []
        for p in range(self.n_steps):
            row, total = [0.0, 0.0], 0.0
            for k in range(2, self.max_gap + 1):
                step = p + k - 1
                if step >= self.n_steps:
                    break
                weight = weights[step] if weights is not None else 1.0
                total += (k - 1) * weight * self._reference[step][k - 1]
                row.append(total)
            self._error.append(row)
        # next forced step after p (or the end)
        self._next_forced = [self.n_steps] * (self.n_steps + 1)
        upcoming = self.n_steps
        for p in range(self.n_steps - 1, -1, -1):
            self._next_forced[p] = upcoming
            if p in self.forced:
                upcoming = p
        self.cost_per_compute = self._fit_cost()

    def _profile_at(self, x: float, span: float) -> float:
        """The profile at fractional calibration step ``x`` and gap ``span`` (bilinear)."""
        last = len(self.profile) - 1
        x = min(max(x, 1.0), float(last))
        lower = int(math.floor(x))
        upper = min(lower + 1, last)
        gap_index = min(max(span, 1.0), float(self._measured_span)) - 1.0
        frac = x - lower
        return (lerp(self.profile[lower], gap_index) * (1 - frac)
                + lerp(self.profile[upper], gap_index) * frac)

    def reference(self, step: int, gap: int) -> float:
        """The profile's change per step at run step ``step``, measured over ``gap`` steps."""
        if not 0 < step < self.n_steps:
            return 0.0
        return self._reference[step][min(max(gap, 1), self.max_gap, step)]

    # -- the plan --------------------------------------------------------------------------
    def _plan_from(self, start: int, ratio: float, cost: float) -> list[int]:
        """Optimal compute steps after ``start`` (forced steps included) to the run's end."""
        n = self.n_steps
        best = [0.0] * (n + 1)
        choice = [n] * (n + 1)
        for p in range(n - 1, start - 1, -1):
            if (n - p) % 256 == 0:
                self.check_interrupt()
            errors = self._error[p]
            last = min(p + self.max_gap, self._next_forced[p])
            best_value, best_q = math.inf, n
            for q in range(p + 1, last + 1):
                value = ratio * errors[q - p] + best[q] + (cost if q < n else 0.0)
                if value < best_value:
                    best_value, best_q = value, q
            best[p], choice[p] = best_value, best_q
        steps, p = [], start
        while choice[p] < n:
            p = choice[p]
            steps.append(p)
        return steps

    def gap(self, step: int, ratio: float) -> int:
        """Steps until the next compute, planned at compute step ``step``; ``n_steps - step``
        when no further compute pays."""
        if not math.isfinite(ratio) or ratio <= 0:
            ratio = 1.0
        ratio = min(max(ratio, RATIO_RANGE[0]), RATIO_RANGE[1]) ** RATIO_POWER
        planned = self._plan_from(step, ratio, self.cost_per_compute)
        return max(1, (planned[0] if planned else self.n_steps) - step)

    def baseline_steps(self, cost: float | None = None) -> list[int]:
        """The computed steps the plan gives on the profile itself (ratio 1)."""
        cost = self.cost_per_compute if cost is None else cost
        return [0, *self._plan_from(0, 1.0, cost)]

    def _fit_cost(self) -> float:
        target = self.n_steps / max(self.speed, 1.0)
        low, high = 1e-9, 1e9
        if len(self.baseline_steps(low)) <= target:
            return low
        for _ in range(48):
            self.check_interrupt()
            mid = math.sqrt(low * high)
            if len(self.baseline_steps(mid)) > target:
                low = mid
            else:
                high = mid
        return high


# --- the calibrated plan as data: what AdaCache Calibrate fits, saves and Apply runs ---------
@dataclass(frozen=True)
class CalibratedPlan:
    """A calibrated plan: the rate at each compute step is planned on ``profile`` at ``speed``
    (``Planner``), never looked up in thresholds. ``codebook`` is the plain codebook calibrated
    from the same runs: shown in the Codebook Editor, a starting point for the what-if and
    what "Use this codebook" writes; the plan itself never reads it."""

    KIND: ClassVar[str] = "calibrated plan"  # the typed name the summary, saved files and UI read
    codebook: Codebook
    profile: GapProfile  # [step][gap - 1]
    speed: float
    positions: tuple[float, ...] = ()  # noise-schedule position of each profile step (+ end)
    moreg: MoRegSettings | None = None  # MoReg calibrated with the plan (brought back with it)
    # what the calibration runs were recorded on (model, latent, sampler, cfg, schedule)
    setup: dict | None = field(default=None, compare=False, hash=False)

    def __post_init__(self):
        if not isinstance(self.codebook, Codebook):
            raise CodebookError(f"a calibrated plan's plain codebook is {self.codebook!r}")
        _validate(self.profile, self.speed, self.positions)

    def planner(self, run_positions, forced=frozenset(), check_interrupt=None, weights=None):
        """The ``Planner`` that places one run's compute steps on the run's positions
        (``forced``: steps the run computes anyway)."""
        return Planner(self.profile, self.speed, run_positions, self.positions, forced,
                       check_interrupt=check_interrupt, weights=weights)

    def describe(self) -> str:
        return (f"calibrated plan for {self.speed:g}x fewer block-stack steps "
                f"({len(self.profile)}-step profile; plain codebook {self.codebook.describe()})")

    def summary_values(self) -> dict:
        """What the log, the node and the Report read: ``kind``, the plan's speed and profile
        length, and its plain codebook's thresholds and rates (drawn faintly, never used)."""
        return {**self.codebook.summary_values(), "kind": self.KIND, "speed": self.speed,
                "profile_steps": len(self.profile)}

    def to_dict(self) -> dict:
        """The saved form: the plain codebook's thresholds and rates at the top (as files
        written before plans had a type of their own), then the plan."""
        data = {**self.codebook.to_dict(), "kind": self.KIND,
                "profile": [list(row) for row in self.profile], "speed": self.speed}
        if self.positions:
            data["positions"] = list(self.positions)
        if self.moreg is not None:
            data["moreg"] = {k: list(v) if isinstance(v, tuple) else v
                             for k, v in asdict(self.moreg).items()}
        if self.setup:
            data["setup"] = self.setup
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> CalibratedPlan:
        return cls.from_dict(parse_json(text))

    @classmethod
    def from_dict(cls, data: dict) -> CalibratedPlan:
        profile = data.get("profile")
        if not profile or not isinstance(profile, (list, tuple)):
            raise CodebookError("calibrated plan: profile must be a list of rows of numbers")
        rows = []
        for step, row in enumerate(profile):
            row = row if isinstance(row, (list, tuple)) else ([] if step == 0 else [row])
            rows.append(tuple(number(v, f"profile step {step} gap {k + 1}")
                              for k, v in enumerate(row)))
        positions = data.get("positions") or ()
        if not isinstance(positions, (list, tuple)):
            raise CodebookError("calibrated plan: positions must be a list of numbers")
        positions = tuple(number(v, f"position {i}") for i, v in enumerate(positions))
        moreg = data.get("moreg")
        if moreg is not None:
            if not isinstance(moreg, dict):
                raise CodebookError("calibrated plan: moreg must be an object of MoReg settings")
            try:
                moreg = MoRegSettings(**{
                    k: tuple(v) if isinstance(v, list) else v for k, v in moreg.items()
                })
            except (TypeError, ValueError) as e:
                raise CodebookError(f"calibrated plan: moreg: {e}") from None
        setup = data.get("setup")
        return cls(Codebook.from_dict(data), tuple(rows), number(data.get("speed"), "speed"),
                   positions, moreg, setup if isinstance(setup, dict) else None)


def codebook_or_plan(data: dict) -> Codebook | CalibratedPlan:
    """A saved codebook or calibrated plan as what it is: its ``kind``, or for files written
    before plans had a type of their own (no ``kind``), a plan when it carries a profile."""
    kind = data.get("kind")
    if kind not in (None, Codebook.KIND, CalibratedPlan.KIND):
        raise CodebookError(
            f"kind {kind!r} is neither {Codebook.KIND!r} nor {CalibratedPlan.KIND!r}"
        )
    if kind == CalibratedPlan.KIND or (kind is None and data.get("profile")):
        return CalibratedPlan.from_dict(data)
    return Codebook.from_dict(data)


def _validate(profile, speed, positions) -> None:
    if len(profile) < 5:
        raise CodebookError(f"calibrated profile has {len(profile)} steps; need at least 5")
    for step, row in enumerate(profile):
        if not isinstance(row, tuple) or (step > 0 and not row):
            raise CodebookError(f"profile step {step} must be a non-empty tuple of numbers")
        for k, value in enumerate(row):
            if not isinstance(value, float) or not math.isfinite(value) or value < 0:
                raise CodebookError(
                    f"profile step {step} gap {k + 1} ({value!r}) must be a finite number >= 0"
                )
    if not any(v > 0 for row in profile[1:] for v in row):
        raise CodebookError("calibrated profile has no positive distance")
    if not isinstance(speed, float) or not math.isfinite(speed) or speed < 1:
        raise CodebookError(f"speed ({speed!r}) must be a finite number >= 1")
    if positions:
        if len(positions) != len(profile) + 1:
            raise CodebookError(
                f"calibrated plan has {len(positions)} positions for {len(profile)} steps; "
                f"need {len(profile) + 1} (every step and the end)"
            )
        for i, value in enumerate(positions):
            if not isinstance(value, float) or not 0.0 <= value <= 1.0:
                raise CodebookError(f"position {i} ({value!r}) must be a number in 0..1")
            if i and value > positions[i - 1]:
                raise CodebookError(
                    f"position {i} ({value:g}) is above position {i - 1} "
                    f"({positions[i - 1]:g}); positions must not increase"
                )
