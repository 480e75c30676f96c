"""Step identity and the compute/reuse schedule of one sampling run (algorithm.md 3-5)."""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field, replace

from .codebook import Codebook
from .moreg import MoRegSettings, MotionRegularizer
from .plan import CalibratedPlan, step_weights

# Why a step runs the block stack (the schedule's decision) ...
WARMUP, FINAL, SCHEDULED, OUTSIDE_RANGE = "warm-up", "final", "scheduled", "outside range"
CACHED = "cached"  # ... or reuses it
# Why one model call on a reused step runs the stack anyway (CacheSchedule.decide_call).
NO_CACHE = "no usable cache"  # this stream has no stored residual (or one of another shape)
WINDOW_NO_CACHE = "context window without its own cache"
STALE_CACHE = "stale cache"  # stored at a step other than the last compute step
CONTROL_HINTS = "ControlNet hints"  # added between blocks: a stored residual holds them
MODEL_PATCHES = "model patches between blocks"  # transformer_options["patches"], same
# A call whose blocks another patch replaced: run as asked, nothing stored or reused.
FOREIGN_BLOCKS = "blocks replaced by another patch"


@dataclass
class StepRecord:
    """One row of the per-run trace (kept for the log, reports and the UI)."""

    step: int
    sigma: float
    computed: bool | None = None  # None: the sampler never reached this step
    reason: str = ""
    calls: int = 0
    call_plans: list[dict] = field(default_factory=list)  # per model call: mode and reason
    distance: float | None = None  # relative change per step at this compute step
    motion: float | None = None  # raw motion score m
    moreg_factor: float | None = None  # m' + |mg| (1.0 outside the MoReg window)
    regularized_distance: float | None = None
    rate: int | None = None  # tau chosen here: next compute = step + tau
    reference_distance: float | None = None  # calibrated plan: the profile's change here

    def as_dict(self) -> dict:
        return asdict(self)


def step_of_sigma(sigmas: list[float], sigma: float) -> int:
    """The step whose interval [sigmas[i+1], sigmas[i]] holds ``sigma``.

    An evaluation at exactly ``sigmas[i]`` is step i; midpoints (dpmpp_2s_ancestral) belong to
    the step they lie in; heun's corrector at ``sigmas[i+1]`` counts as step i+1, whose first
    evaluation uses the same sigma. Sigmas above the schedule map to step 0.
    """
    n_steps = len(sigmas) - 1
    tol = 1e-5 * max(abs(sigma), 1e-6)
    step = 0
    for i in range(n_steps):
        if sigmas[i] >= sigma - tol:
            step = i
        else:
            break
    return step


def equivalent_steps(timesteps: list[float], full_range: float) -> float:
    """Steps a full schedule would have at this schedule's density.

    ``timesteps`` are the model timesteps of the sampled sigmas and ``full_range`` the timestep
    span of the whole noise schedule; a KSamplerAdvanced half (10 of 20 steps) gives 20, so a
    preset codebook fits the step density rather than the length of the slice.
    """
    n = len(timesteps) - 1
    covered = abs(timesteps[0] - timesteps[-1])
    if n < 1 or full_range <= 0 or covered <= 0:
        return float(max(n, 1))
    return n / min(1.0, covered / full_range)


class CacheSchedule:
    """The rule, and the step records it writes: whether the block stack runs, per step
    (``enter``) and per call (``decide_call``: a call that cannot reuse turns a reused step
    into a compute step, ``force``, never the reverse), and a compute step's rate, fixed when
    its measures arrive (``measure_all``)."""

    def __init__(
        self,
        sigmas: list[float],
        codebook: Codebook | CalibratedPlan,
        moreg: MoRegSettings | None = None,
        cache_sigma_range: tuple[float, float] = (math.inf, 0.0),
        schedule_steps: float | None = None,
        first_step: int = 0,
        positions=None,
        check_interrupt=None,
        combine=None,
    ):
        """``schedule_steps``/``first_step``: the whole schedule's length and where this run's
        first step sits in it (a KSamplerAdvanced slice), so the MoReg window is the whole
        schedule's, not the slice's. ``positions``: each step's (and the end's) place in the
        model's noise schedule, 1 = noise .. 0 = clean (default: the sigmas, linearly), where
        a calibrated plan and calibrated MoReg are read. ``combine``: a split run's measures
        of a step from every rank (shard.py), so all ranks decide alike."""
        self.sigmas = [float(s) for s in sigmas]
        self.n_steps = max(len(self.sigmas) - 1, 0)
        self.positions = tuple(positions) if positions else _linear_positions(self.sigmas)
        self.rule = codebook  # a codebook, or a calibrated plan (its planner places the steps)
        self.first_step = first_step
        whole = round(schedule_steps) if schedule_steps else self.n_steps
        self.regularizer = MotionRegularizer(moreg, whole) if moreg and moreg.enabled else None
        self.cache_sigma_high, self.cache_sigma_low = cache_sigma_range
        outside = {i for i in range(self.n_steps) if not self._in_range(i)}
        # a calibrated plan places every compute after step 0 (steps outside the range forced)
        self.planner = codebook.planner(
            self.positions, outside, check_interrupt, step_weights(self.sigmas)
        ) if self.n_steps > 2 else None
        self.trace = [StepRecord(i, self.sigmas[i]) for i in range(self.n_steps)]
        self.current: int | None = None
        self.next_compute = 0
        self.combine = combine
        # the current compute step's measures so far, and MoReg's state before them
        self._measures: list[tuple[float, int, float | None]] = []
        self._regularizer_before = self.regularizer

    def _in_range(self, step: int) -> bool:
        return self.cache_sigma_low <= self.sigmas[step] <= self.cache_sigma_high

    # -- the rule: per step, per call, and the fallback ------------------------------------
    def enter(self, step: int) -> StepRecord:
        """Called on every model evaluation; returns the record of its step, decided."""
        step = min(max(step, 0), max(self.n_steps - 1, 0))
        if step != self.current:
            self._settle()
            self.current = step
            self._measures, self._regularizer_before = [], self.regularizer
            record = self.trace[step]
            record.computed, record.reason = self._decide(step)
        record = self.trace[step]
        record.calls += 1
        return record

    def _decide(self, step: int) -> tuple[bool, str]:
        placed = self.planner is not None  # the ends included
        if step < (1 if placed else 2):
            return True, WARMUP
        if step >= self.n_steps - 2 and not placed:
            return True, FINAL
        if not self._in_range(step):
            return True, OUTSIDE_RANGE
        if step >= self.next_compute:
            return True, SCHEDULED
        return False, CACHED

    def decide_call(self, step: int, compute_reason: str | None = None,
                    cache_problem=lambda: None) -> StepRecord:
        """One model call at ``step``: its record says whether it runs the stack and why
        (``computed``, ``reason``). In order: the step's own decision (warm-up, final, outside
        range, scheduled), a reason the host gives (ControlNet hints, model patches between
        blocks), then ``cache_problem()``, what the call's streams lack (no usable cache, stale
        cache, ...). A reused step whose call must compute becomes a compute step."""
        record = self.enter(step)
        if not record.computed:
            reason = compute_reason or cache_problem()
            if reason is not None:
                self.force(step, reason)
        return record

    def force(self, step: int, reason: str) -> None:
        """The step computes after all (a call that cannot reuse: ``reason``)."""
        record = self.trace[step]
        if not record.computed:
            record.computed, record.reason = True, reason

    # -- the rate: fixed when the compute step's measurement arrives -----------------------
    def measure(self, distance: float, gap: int, motion: float | None) -> StepRecord:
        """Distance (already per step) and motion of one stream at the current compute step;
        ``measure_all`` with that one measure."""
        return self.measure_all([(distance, gap, motion)])

    def measure_all(self, measures: list, step: int | None = None) -> StepRecord | None:
        """The ``(distance per step, gap, motion)`` of streams measured at compute step
        ``step`` (default: the current one). The step's record gets its rate, and the
        schedule its next compute step, right here: from the mean over every stream measured
        at the step so far (streams of one step may arrive in several calls). A split run
        gathers every rank's measures first (``combine``: every rank calls this once per
        compute call, with or without measures)."""
        if self.combine is not None:
            measures = self.combine(list(measures))
        step = self.current if step is None else step
        if not measures or step is None or step != self.current:
            return None
        record = self.trace[step]
        if not record.computed:
            return record
        self._measures += measures
        self._fix_rate(record)
        return record

    def _fix_rate(self, record: StepRecord) -> None:
        measures = self._measures
        distance = sum(m[0] for m in measures) / len(measures)
        gap = round(sum(m[1] for m in measures) / len(measures))
        motions = [m[2] for m in measures if m[2] is not None]
        motion = sum(motions) / len(motions) if motions else None
        factor = 1.0
        if self._regularizer_before is not None:  # MoReg as the step found it: one factor a step
            self.regularizer = replace(self._regularizer_before)
            factor, _ = self.regularizer.factor(
                self.first_step + record.step, motion, gap, self.positions[record.step]
            )
        record.distance, record.motion = distance, motion
        record.moreg_factor = factor if self.regularizer is not None else None
        record.regularized_distance = distance * factor
        record.rate = self._rate(record, gap)
        self.next_compute = record.step + record.rate

    def _rate(self, record: StepRecord, gap: int) -> int:
        if self.planner is None:
            return self.rule.rate_for(record.regularized_distance)
        reference = self.planner.reference(record.step, gap)
        record.reference_distance = reference
        ratio = record.regularized_distance / reference if reference > 0 else 1.0
        return self.planner.gap(record.step, ratio)

    def _settle(self) -> None:
        """A compute step that measured nothing (step 0, streams seen first) goes on at the
        plan's own pace, or the next step; fixed when its step ends."""
        record = self.trace[self.current] if self.current is not None else None
        if record is not None and record.computed and record.rate is None:
            record.rate = self.planner.gap(record.step, 1.0) if self.planner else 1
            self.next_compute = record.step + record.rate

    def log_call(self, step: int, plan: dict) -> None:
        """One model call's mode and reason, in its step's record (the trace shows them)."""
        if self.trace:
            self.trace[min(max(step, 0), len(self.trace) - 1)].call_plans.append(plan)

    def close(self) -> None:
        """The run ended: its last step settled (a rate, if it measured nothing)."""
        self._settle()
        self.current = None

    def last_compute_step(self, before: int) -> int | None:
        """The latest step before ``before`` that ran the stack: the only step whose stored
        residuals a reused step may add."""
        for record in reversed(self.trace[:before]):
            if record.computed:
                return record.step
        return None

    # -- summaries -------------------------------------------------------------------------
    @property
    def computed_steps(self) -> list[int]:
        return [r.step for r in self.trace if r.computed]

    @property
    def reused_steps(self) -> list[int]:
        return [r.step for r in self.trace if r.computed is False]

    def pattern(self) -> str:
        """One character per step: C computed, . reused, ' ' not reached."""
        return "".join({True: "C", False: ".", None: " "}[r.computed] for r in self.trace)


def _linear_positions(sigmas: list[float]) -> tuple[float, ...]:
    high, low = (sigmas[0], sigmas[-1]) if sigmas else (1.0, 0.0)
    span = high - low
    return tuple(min(max((s - low) / span, 0.0), 1.0) if span > 0 else 1.0 for s in sigmas)


# Reasons a recorded step computed whatever the codebook said: they hold for any codebook.
FORCED_BY_THE_RUN = frozenset({OUTSIDE_RANGE, CONTROL_HINTS, MODEL_PATCHES})


@dataclass
class Prediction:
    computed: list[int]
    approximate: bool  # a compute step's change was not measured over its predicted gap
    rates: list[int | None]  # per step: the rate chosen there (None on a reused step)


def predict_schedule(
    records: list[dict | None], codebook: Codebook, sigmas: list[float], positions=None,
    gap_distances=None,
) -> Prediction:
    """The compute steps ``codebook`` (thresholds or a calibrated plan) gives on a recorded
    run: the run's own ``CacheSchedule``, fed the recorded changes (the what-if).

    ``records``: the run's trace (``StepRecord.as_dict()``, index = step); its steps forced by
    the run (``FORCED_BY_THE_RUN``) stay forced. At a compute step reached after a gap ``k``
    the change is, in order: a calibration run's change over ``k`` (``gap_distances[step]``),
    the step's own recorded change, the nearest recorded one. Exact when each compute step's
    change was measured over the same gap (a calibration trace: every step at gap 1);
    otherwise ``approximate``. MoReg is not replayed: recorded changes include its factor.
    """
    n_steps = max(len(sigmas) - 1, 0)
    schedule = CacheSchedule(sigmas, codebook, positions=positions)

    def field_of(step: int, name: str):
        record = records[step] if 0 <= step < len(records) else None
        return record.get(name) if record else None

    def recorded(step: int) -> float | None:
        value = field_of(step, "regularized_distance")
        return value if value is not None else field_of(step, "distance")

    known = [t for t in range(1, n_steps) if recorded(t) is not None]
    ran = [t for t in range(n_steps) if field_of(t, "computed")]
    # the gap each compute step of the run was measured over
    run_gaps = {t: t - before for before, t in zip(ran, ran[1:], strict=False)}
    every_step = n_steps > 1 and len(known) == n_steps - 1
    computed: list[int] = []
    approximate = False
    for step in range(n_steps):
        record = schedule.enter(step)
        if not record.computed and field_of(step, "reason") in FORCED_BY_THE_RUN:
            schedule.force(step, field_of(step, "reason"))
        if not record.computed:
            continue
        gap = step - computed[-1] if computed else 0
        computed.append(step)
        if gap < 1:
            continue
        row = gap_distances[step] if gap_distances and step < len(gap_distances) else None
        value = row[min(gap, len(row)) - 1] if row else None
        if value is None:
            value = recorded(step)
            if value is None and known:
                value = recorded(_nearest(known, step))
            exact = value is not None and (gap == 1 if every_step else run_gaps.get(step) == gap)
            approximate = approximate or (not exact and bool(known))
        if value is not None:
            schedule.measure(value, gap, None)
    schedule.close()
    return Prediction(computed, approximate, [r.rate for r in schedule.trace])


def _nearest(steps: list[int], step: int) -> int:
    """The entry of sorted ``steps`` closest to ``step`` (the lower one on a tie)."""
    i = bisect.bisect_left(steps, step)
    if i == 0:
        return steps[0]
    if i == len(steps) or step - steps[i - 1] <= steps[i] - step:
        return steps[i - 1]
    return steps[i]


def preview_schedule(
    distances: list[float | None], codebook: Codebook, n_steps: int, gap_distances=None,
    positions=None, sigmas=None,
) -> list[int]:
    """The compute steps the rule gives when step i's distance is ``distances[i]``
    (``predict_schedule`` on those distances).

    With ``gap_distances`` (a calibration run's ``[step][gap - 1]`` changes), a compute step
    reached after a gap of k sees the change over k steps, as a cached run measures it.
    """
    if sigmas is None or len(sigmas) != n_steps + 1:
        sigmas = [float(n_steps - i) for i in range(n_steps + 1)]
    records = [{"distance": d} if d is not None else None for d in distances]
    return predict_schedule(records, codebook, sigmas, positions, gap_distances).computed
