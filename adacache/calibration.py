"""Calibration: a calibrated plan (and MoReg constants) fitted to a model from recorded runs.

A *calibration run* computes every step and records, per step ``t``, the metric residual's
change over every gap ``k`` up to ``MAX_GAP`` (``gap_distances[t][k - 1]``, relative L1 per
step, as a cached run would measure it after a gap of ``k``; ``distances[t]`` is the gap-1
value) and the raw motion score ``m_t``. From a few such runs, ``calibrate`` returns a calibrated
plan (``plan.CalibratedPlan``): the runs' mean change profile and a speed target and, for video,
MoReg constants normalised to the model. The rule and its measurements are in
``docs/calibration.md``.

    samples = [CalibrationSample(distances=(None, 0.21, ...), motions=(...),
                                 gap_distances=((), (0.21,), (0.09, 0.11), ...)), ...]
    result = calibrate(samples, speed=3.0, moreg=True)
    result.plan, result.moreg, result.predicted_computed, result.describe()
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch

from .codebook import Codebook, CodebookError
from .metrics import relative_distance
from .moreg import MoRegSettings
from .plan import CalibratedPlan, Planner, even_positions, step_weights
from .schedule import preview_schedule

MAX_GAP = 24  # longest gap a calibration run measures (covers 6x at 30 steps, 2x at 50)
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
    # noise-schedule position of each step and of the end (1 = noise .. 0 = clean); a slice of
    # the schedule (KSamplerAdvanced, one expert, denoise < 1) holds only its part
    positions: tuple[float, ...] = ()
    # what it was recorded on: model class and weights fingerprint, latent shape, sampler,
    # cfg, sigmas (see nodes/calibration_store.py); compared when a plan is used
    setup: dict | None = field(default=None, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "distances", tuple(_finite_or_none(d) for d in self.distances))
        object.__setattr__(self, "motions", tuple(_finite_or_none(m) for m in self.motions))
        object.__setattr__(
            self, "gap_distances",
            tuple(tuple(_finite_or_none(d) for d in row) for row in self.gap_distances),
        )
        positions = tuple(float(p) for p in self.positions)
        if positions and (len(positions) != len(self.distances) + 1 or any(
            not 0.0 <= p <= 1.0 for p in positions
        )):
            raise CodebookError(
                f"calibration sample has {len(positions)} positions for "
                f"{len(self.distances)} steps; need one per step and the end, each in 0..1"
            )
        object.__setattr__(self, "positions", positions)

    def step_positions(self) -> tuple[float, ...]:
        """Positions of the steps and the end; a sample without them spans the schedule."""
        return self.positions or even_positions(self.n_steps)

    @property
    def n_steps(self) -> int:
        return len(self.distances)

    def to_dict(self) -> dict:
        return {"distances": list(self.distances), "motions": list(self.motions),
                "gap_distances": [list(row) for row in self.gap_distances],
                "positions": list(self.positions), "setup": self.setup}

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationSample:
        return cls(tuple(data.get("distances", ())), tuple(data.get("motions", ())),
                   tuple(tuple(row) for row in data.get("gap_distances", ())),
                   tuple(data.get("positions") or ()), data.get("setup"))

    def then(self, later: CalibrationSample) -> CalibrationSample:
        """This sample followed by ``later``, recorded on the next slice of the same schedule
        (its rows already hold the gaps that reach back into this one)."""
        positions = ()
        if self.positions and later.positions:
            positions = self.positions[:-1] + later.positions
        distances = list(later.distances)
        if distances and distances[0] is None and later.gap_distances and later.gap_distances[0]:
            distances[0] = later.gap_distances[0][0]  # its first step's change, across the cut
        setup = dict(self.setup or {}) or None
        if setup is not None:  # the whole schedule so far
            setup["steps"] = self.n_steps + later.n_steps
            first, then = setup.get("sigmas"), (later.setup or {}).get("sigmas")
            setup["sigmas"] = first[:-1] + then if first and then else None
            setup["last_position"] = (later.setup or {}).get("last_position")
        return CalibrationSample(
            self.distances + tuple(distances),
            self.motions + later.motions,
            self.gap_distances + later.gap_distances,
            positions,
            setup,
        )


class GapRecorder:
    """Keeps the last ``MAX_GAP`` metric samples of one stream (``metrics.metric_sample``, the
    same estimator a cached run measures with) in a calibration run and returns, per step,
    their change over every gap. A recorder may be carried on into the next slice of the same
    schedule (steps then count from the first slice's start)."""

    def __init__(self, metric: str = "l1", max_gap: int = MAX_GAP):
        self.metric = metric
        self.history: deque[tuple[int, dict[int, torch.Tensor]]] = deque(maxlen=max_gap)

    def offloaded(self) -> GapRecorder:
        """A copy whose kept samples live in CPU memory (carried between sampling calls)."""
        copy = GapRecorder(self.metric, self.history.maxlen or MAX_GAP)
        copy.history.extend(
            (step, {p: t.to("cpu") for p, t in kept.items()}) for step, kept in self.history
        )
        return copy

    def add(self, step: int, residuals: dict[int, torch.Tensor]) -> tuple[float | None, ...]:
        current = dict(residuals)
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


@dataclass
class CalibrationResult:
    plan: CalibratedPlan
    moreg: MoRegSettings | None
    speed: float  # requested block-stack speedup (steps / computed steps)
    predicted_computed: list[int] = field(default_factory=list)  # per sample, on its trace
    n_steps: int = 0
    left_out: int = 0  # runs recorded on another schedule (not on the plan's grid)
    used: tuple[int, ...] = ()  # indices of the samples the plan was fitted on

    def describe(self) -> str:
        counts = ", ".join(str(c) for c in self.predicted_computed)
        text = (
            f"calibrated plan for {self.speed:g}x fewer block-stack steps at {self.n_steps} "
            f"steps: on the {len(self.predicted_computed)} calibration run(s) it computes "
            f"{counts} of {self.n_steps} steps (predicted); plain codebook "
            f"{self.plan.codebook.editor_text()}"
        )
        if self.moreg is not None:
            text += "; MoReg normalised to the runs' motion per step"
        if self.left_out:
            text += (f"; {self.left_out} run(s) recorded on another schedule (step count, "
                     "scheduler or shift) left out")
        return text


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


POSITION_TOLERANCE = 1e-4  # two steps at the same noise-schedule position (float32 sigmas)


def align(samples: list[CalibrationSample]) -> tuple[tuple[float, ...], list, list]:
    """The common step grid of ``samples`` and each sample's offset in it.

    The grid is the schedule of the sample that covers the most steps (the newest of equal
    ones). A sample lies on it when its step positions are the grid's from some offset on (a
    KSamplerAdvanced slice or one expert's part of the same schedule); the rest are returned
    apart (another scheduler, shift or step count): ``(grid, [(sample, offset)], left_out)``.
    """
    reference = max(reversed(samples), key=lambda s: s.n_steps)
    grid = reference.step_positions()
    aligned, left_out = [], []
    for sample in samples:
        positions = sample.step_positions()
        offset = min(range(len(grid)), key=lambda i: abs(grid[i] - positions[0]))
        fits = offset + len(positions) <= len(grid) and all(
            abs(grid[offset + i] - p) <= POSITION_TOLERANCE for i, p in enumerate(positions)
        )
        (aligned if fits else left_out).append((sample, offset) if fits else sample)
    return grid, aligned, left_out


def reference_setup(aligned: list, n_steps: int) -> dict | None:
    """The setup of a run that spans the whole grid (its sigmas are the grid's)."""
    for sample, _ in reversed(aligned):
        if sample.n_steps == n_steps and sample.setup:
            return sample.setup
    return None


def _gap_profile(aligned: list, n_steps: int) -> tuple[tuple[float, ...], ...]:
    """Mean change per step and gap over the runs, on the grid; gaps a run did not record fall
    back to the longest shorter gap (or the per-step distance); steps no run recorded take the
    nearest recorded step's row."""
    rows: list[tuple[float, ...] | None] = [()]
    for step in range(1, n_steps):
        gap_rows, per_step = [], []
        for sample, offset in aligned:
            local = step - offset
            if 0 <= local < sample.n_steps:
                if local < len(sample.gap_distances):
                    gap_rows.append(sample.gap_distances[local])
                per_step.append(sample.distances[local])
        first = _mean(per_step)
        row: list[float] = []
        for gap in range(1, min(step, MAX_GAP) + 1):
            value = _mean(r[gap - 1] for r in gap_rows if gap - 1 < len(r))
            if value is None:
                value = row[-1] if row else first
            if value is None:
                break
            row.append(float(value))
        rows.append(tuple(row) if row else None)
    known = [i for i, r in enumerate(rows) if r]
    if not known:
        return tuple(() for _ in rows)
    for i in range(1, n_steps):
        if not rows[i]:
            rows[i] = rows[min(known, key=lambda k: (abs(k - i), k))]
    return tuple(rows)


def calibrate(
    samples: list[CalibrationSample], speed: float = 3.0, moreg: bool = False,
    max_factor: float = 4.0,
) -> CalibrationResult:
    """A calibrated plan computing about ``1 / speed`` of the steps on the recorded runs.

    The plan carries the runs' mean change profile on the noise-schedule positions of their
    steps, the speed target and, with ``moreg``, MoReg whose reference motion per position is
    the runs' mean motion score (a video moving no more than the calibration runs gets no extra
    compute). Its plain codebook is the supplement's uniform split of the observed range over
    the gaps the plan uses (shown in the editor; what "Use this codebook" writes). Runs
    recorded on another schedule than the newest longest one are left out.
    """
    if not samples:
        raise CodebookError("calibration needs at least one recorded run")
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(
        speed
    ) or speed < 1:
        raise CodebookError(f"speed target {speed!r} must be a finite number >= 1")
    grid, aligned, left_out = align(samples)
    n_steps = len(grid) - 1
    if n_steps < 5:
        raise CodebookError(f"calibration runs have {n_steps} steps; need at least 5")
    used = [sample for sample, _ in aligned]
    values = [d for s in used for d in s.distances[1:] if d is not None and d > 0]
    if len(values) < 2:
        raise CodebookError("calibration runs recorded no distances (was every step computed?)")
    profile = _gap_profile(aligned, n_steps)
    sigmas = (reference_setup(aligned, n_steps) or {}).get("sigmas")
    baseline = Planner(profile, float(speed), grid, grid,
                       weights=step_weights(sigmas) if sigmas else None).baseline_steps()
    plain = _plain_codebook(values, baseline)
    moreg_settings = None
    if moreg:
        motions = [
            _mean(s.motions[i - o] for s, o in aligned if 0 <= i - o < len(s.motions))
            for i in range(n_steps)
        ]
        known = [m for m in motions if m is not None and m > 0]
        if known:
            reference = tuple(max(m if m is not None else known[0], 1e-6) for m in motions)
            moreg_settings = MoRegSettings(
                enabled=True, norm_p=MOREG_EXPONENT, norm_b=1.0, gradient_scale=0.0,
                reference=reference, max_factor=max_factor, reference_positions=grid[:-1],
            )
    setup = dict(used[-1].setup or {}) or None
    plan = CalibratedPlan(plain, profile, float(speed), grid, moreg_settings, setup)
    predicted = [
        len(preview_schedule(list(s.distances), plan, s.n_steps, s.gap_distances or None,
                             positions=s.step_positions(), sigmas=(s.setup or {}).get("sigmas")))
        for s in used
    ]
    used_ids = {id(s) for s in used}
    return CalibrationResult(plan, moreg_settings, float(speed), predicted, n_steps,
                             left_out=len(left_out),
                             used=tuple(i for i, s in enumerate(samples) if id(s) in used_ids))


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
