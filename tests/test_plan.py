"""Tier 1: the calibrated plan, calibration and calibrated MoReg (pure core, no model)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from comfyui_adacache.adacache import (
    AdaCacheConfig,
    AdaCacheRun,
    CacheSchedule,
    CalibratedPlan,
    CalibrationSample,
    Codebook,
    CodebookError,
    MoRegSettings,
    MotionRegularizer,
    calibrate,
    codebook_or_plan,
    preview_schedule,
)
from comfyui_adacache.adacache.calibration import MAX_GAP, GapRecorder
from comfyui_adacache.adacache.families import FAMILIES
from comfyui_adacache.adacache.plan import Planner, even_positions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from benchkit import fixed_schedule  # noqa: E402

N = 30


def rising_profile(n=N, low=0.02, high=0.3, shrink=0.85):
    """A change profile like the demo model's: small early, large at the end; a change
    measured over a longer gap is smaller per step."""
    rows = [()]
    for step in range(1, n):
        per_step = low + (high - low) * (step / (n - 1)) ** 3
        rows.append(tuple(per_step * shrink ** math.log2(gap) for gap in range(1, step + 1)))
    return tuple(rows)


def planner_for(profile, n_steps, speed, **kwargs):
    """A plan for an evenly spaced run of ``n_steps`` on a profile calibrated evenly spaced."""
    return Planner(profile, speed, even_positions(n_steps), even_positions(len(profile)),
                   **kwargs)


def sample_from(profile, scale=1.0, motion=0.15):
    return CalibrationSample(
        distances=(None, *(row[0] * scale for row in profile[1:])),
        motions=(None, *([motion] * (len(profile) - 1))),
        gap_distances=((), *(tuple(v * scale for v in row) for row in profile[1:])),
    )


@pytest.mark.parametrize("speed", [2.0, 3.0, 4.0, 5.0, 6.0])
def test_the_plan_on_its_own_profile_meets_the_speed_target(speed):
    planner = planner_for(rising_profile(), N, speed)
    steps = planner.baseline_steps()
    assert steps[0] == 0  # only step 0 is forced; the plan places the rest
    assert len(steps) <= N / speed
    assert len(steps) >= N / speed - 2  # close to the target, not far below it
    assert steps == sorted(set(steps))


def test_the_plan_is_dense_where_the_model_changes():
    steps = planner_for(rising_profile(), N, 3.0).baseline_steps()
    gaps = [b - a for a, b in zip(steps[:-1], steps[1:], strict=True)]
    assert gaps[0] > gaps[-1]  # long early gaps (little change), short late ones
    assert 1 not in steps  # the second step is the plan's to place, not forced


def test_a_video_that_changes_faster_than_the_profile_gets_shorter_gaps():
    planner = planner_for(rising_profile(), N, 3.0)
    gaps = [planner.gap(5, ratio) for ratio in (0.25, 0.5, 1.0, 2.0, 4.0, 16.0)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[0] > gaps[-1] >= 1
    assert planner.gap(5, float("nan")) == planner.gap(5, 1.0)


@pytest.mark.parametrize("n_steps", [20, 30, 50, 100])
def test_profiles_are_read_at_other_step_counts_by_position(n_steps):
    profile = rising_profile()
    planner = planner_for(profile, n_steps, 3.0)
    # the same place in the schedule, scaled by the step density
    assert planner.reference(n_steps - 1, 1) == pytest.approx(
        profile[N - 1][0] * N / n_steps, rel=0.15)
    steps = planner.baseline_steps()
    assert len(steps) <= n_steps / 3.0 + 1e-9


def test_calibrate_returns_a_calibrated_plan_that_round_trips():
    profile = rising_profile()
    samples = [sample_from(profile, s) for s in (0.9, 1.0, 1.1)]
    result = calibrate(samples, 3.0, moreg=True)
    plan = result.plan
    assert isinstance(plan, CalibratedPlan) and not isinstance(plan, Codebook)
    assert plan.speed == 3.0 and len(plan.profile) == N
    assert plan.positions == pytest.approx(even_positions(N))
    assert plan.moreg == result.moreg  # the plan carries its MoReg
    slow, typical, fast = result.predicted_computed  # runs changing 0.9x, 1x, 1.1x the mean
    assert slow < typical < fast and typical <= N / 3
    again = CalibratedPlan.from_json(plan.to_json())
    assert again == plan and codebook_or_plan(json.loads(plan.to_json())) == plan
    assert plan.describe().startswith("calibrated plan")
    assert plan.summary_values()["kind"] == "calibrated plan"
    assert plan.codebook.summary_values()["kind"] == "codebook"
    # its plain codebook's editor form is accepted by the editor as is
    thresholds, rates = plan.codebook.editor_text().split(" | ")
    plain = Codebook.from_text(thresholds.split(": ")[1], rates.split(": ")[1])
    assert plain == plan.codebook
    assert result.moreg is not None and len(result.moreg.reference) == N
    assert "calibrated plan" in result.describe()


# A plan as AdaCache Calibrate saved it before plans had a type of their own: no "kind", the
# plain codebook's thresholds and rates at the top, the plan's fields beside them.
OLD_PLAN_FILE = {
    "name": "old", "thresholds": [0.05, 0.1, 1.0], "rates": [4, 2, 1],
    "profile": [[], [0.02], [0.03, 0.025], [0.05, 0.04, 0.035], [0.08, 0.07, 0.06, 0.05],
                [0.1, 0.09, 0.08, 0.07, 0.06], [0.2, 0.18, 0.16, 0.14, 0.12, 0.1]],
    "speed": 2.0, "positions": [1.0, 0.9, 0.75, 0.6, 0.45, 0.3, 0.15, 0.0],
    "moreg": {"enabled": True, "strides": [1], "norm_a": 1.0, "norm_p": 4.0, "norm_b": 1.0,
              "gradient_scale": 0.0, "window_start": 0.0, "window_end": 1.0,
              "reference": [0.1] * 7, "max_factor": 4.0,
              "reference_positions": [1.0, 0.9, 0.75, 0.6, 0.45, 0.3, 0.15]},
    "setup": {"model": "WanModel", "sampler": "euler"},
    "created": "2026-11-30T10:00:00Z", "n_steps": 7, "runs": 2, "videos": 2,
    "predicted_computed": [4, 4],
}


def test_an_old_plan_file_loads_as_a_plan_and_an_old_codebook_file_as_a_codebook():
    plan = codebook_or_plan(OLD_PLAN_FILE)
    assert isinstance(plan, CalibratedPlan) and plan.speed == 2.0 and len(plan.profile) == 7
    assert plan.codebook == Codebook((0.05, 0.1, 1.0), (4, 2, 1))
    assert plan.moreg.reference == (0.1,) * 7 and plan.setup["sampler"] == "euler"
    assert plan.positions == tuple(OLD_PLAN_FILE["positions"])
    # saved again it says what it is, and reads back the same
    assert plan.to_dict()["kind"] == "calibrated plan" and codebook_or_plan(plan.to_dict()) == plan
    old_codebook = {"name": "cb", "thresholds": [0.1, 1.0], "rates": [3, 1], "created": "x"}
    assert codebook_or_plan(old_codebook) == Codebook((0.1, 1.0), (3, 1))
    # the same schedule as a plan made from the same numbers
    same = CalibratedPlan(plan.codebook, plan.profile, 2.0, plan.positions)
    sigmas = [float(7 - i) for i in range(8)]
    assert preview_schedule([None, 0.02, 0.03, 0.05, 0.08, 0.1, 0.2], plan, 7) == \
        preview_schedule([None, 0.02, 0.03, 0.05, 0.08, 0.1, 0.2], same, 7)
    assert CacheSchedule(sigmas, plan).planner is not None
    with pytest.raises(CodebookError, match="kind 'recipe'"):
        codebook_or_plan({**old_codebook, "kind": "recipe"})


def test_calibration_predictions_match_the_schedule_on_the_calibration_run():
    profile = rising_profile()
    sample = sample_from(profile)
    result = calibrate([sample], 4.0)
    predicted = preview_schedule(list(sample.distances), result.plan, N,
                                 sample.gap_distances)
    # a schedule fed with the same gap distances reaches the same steps
    schedule = CacheSchedule([float(N - i) for i in range(N + 1)], result.plan)
    last = None
    for step in range(N):
        record = schedule.enter(step)
        if record.computed and last is not None:
            gap = step - last
            schedule.measure(sample.gap_distances[step][gap - 1], gap, None)
        if record.computed:
            last = step
    schedule.close()
    assert schedule.computed_steps == predicted
    assert len(predicted) == result.predicted_computed[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.5, True, "3"])
def test_calibrate_rejects_a_bad_speed(bad):
    with pytest.raises(CodebookError, match="speed target"):
        calibrate([sample_from(rising_profile())], bad)


def test_calibrate_rejects_runs_without_distances():
    with pytest.raises(CodebookError, match="at least one"):
        calibrate([], 3.0)
    empty = CalibrationSample(tuple([None] * N))
    with pytest.raises(CodebookError, match="no distances"):
        calibrate([empty], 3.0)


def test_calibration_without_gap_distances_falls_back_to_per_step_changes():
    profile = rising_profile()
    per_step_only = CalibrationSample(sample_from(profile).distances)
    result = calibrate([per_step_only], 3.0)
    assert all(len(row) == min(step, MAX_GAP) for step, row in enumerate(result.plan.profile))
    assert result.plan.profile[10][4] == pytest.approx(profile[10][0])


@pytest.mark.parametrize("profile, message", [
    ([[], [0.1], [float("nan"), 0.1], [0.1], [0.1], [0.1]], "profile step 2 gap 1"),
    ([[], [0.1], [0.1]], "need at least 5"),
    ([[], [0.0], [0.0], [0.0], [0.0]], "no positive"),
])
def test_calibrated_plans_name_the_bad_entry(profile, message):
    data = {"thresholds": [1.0], "rates": [1], "profile": profile, "speed": 3}
    with pytest.raises(CodebookError, match=message):
        CalibratedPlan.from_json(json.dumps(data).replace("NaN", '"nan"'))
    with pytest.raises(CodebookError, match=message):  # an old file (no "kind") is a plan too
        codebook_or_plan(json.loads(json.dumps(data).replace("NaN", '"nan"')))


def test_gap_recorder_measures_every_gap_per_step():
    recorder = GapRecorder()
    base = torch.ones(2, 8, 4)
    assert recorder.add(0, {1: base}) == ()
    row = recorder.add(1, {1: base * 1.1})
    assert row == pytest.approx((0.1,))
    row = recorder.add(2, {1: base * 1.2})
    assert row[0] == pytest.approx(0.1 / 1.1) and row[1] == pytest.approx(0.2 / 2)


def test_calibrated_moreg_gives_no_extra_compute_below_the_reference_and_is_bounded():
    settings = MoRegSettings(norm_p=4.0, gradient_scale=0.0, window_start=0.0, window_end=1.0,
                             reference=tuple([0.2] * N), max_factor=4.0)
    regularizer = MotionRegularizer(settings, N)
    assert regularizer.factor(10, 0.1, 1)[0] == 1.0  # a static video: factor 1
    assert regularizer.factor(11, 0.2, 1)[0] == 1.0
    assert regularizer.factor(12, 0.24, 1)[0] == pytest.approx(1.2**4)
    assert regularizer.factor(13, 1.0, 1)[0] == 4.0  # bounded


@pytest.mark.parametrize("field, value", [("norm_a", float("nan")), ("norm_p", float("inf")),
                                          ("max_factor", 0.5), ("window_end", float("nan"))])
def test_moreg_rejects_non_finite_constants(field, value):
    with pytest.raises(ValueError, match=field):
        MoRegSettings(**{field: value})


def test_a_benchmarks_fixed_schedule_computes_exactly_those_steps():
    """A benchmark's baseline (benchkit.fixed_schedule) goes through the ordinary rule: its
    planner places the compute steps, and steps the run forces (outside the range) are
    computed besides."""
    fixed = fixed_schedule((0, 1, 9, 20, 28, 29))
    sigmas = [float(N - i) for i in range(N + 1)]
    schedule = CacheSchedule(sigmas, fixed)
    for step in range(N):
        schedule.enter(step)
    schedule.close()
    assert schedule.computed_steps == [0, 1, 9, 20, 28, 29]
    schedule = CacheSchedule(sigmas, fixed, cache_sigma_range=(math.inf, sigmas[25]))
    for step in range(N):
        schedule.enter(step)
    assert schedule.computed_steps == [0, 1, 9, 20, 26, 27, 28, 29]


def test_the_calibrate_preset_computes_every_step_and_records_gap_changes():
    family = next(f for f in FAMILIES if f.is_video)
    run = AdaCacheRun(AdaCacheConfig(preset="calibrate"), family, 4,
                      [float(10 - i) / 10 for i in range(11)])
    assert run.rule.rates == (1,)
    for step in range(10):
        run.schedule.enter(step)
        run.gap_rows.setdefault(step, []).append(tuple(0.1 / k for k in range(1, step + 1)))
    sample = run.calibration_sample()
    assert len(sample.gap_distances) == 10 and sample.gap_distances[3] == pytest.approx(
        (0.1, 0.05, 0.1 / 3))


def test_a_slice_of_the_schedule_reads_the_profile_where_it_is():
    """A KSamplerAdvanced part (steps 10..20 of 30) reads the whole profile at its positions."""
    plan = calibrate([sample_from(rising_profile())], 3.0).plan
    whole = planner_for(plan.profile, N, 3.0)
    positions = even_positions(N)[10:21]  # 10 steps: whole-schedule steps 10..19 and the end
    sigmas = [float(N - i) for i in range(10, 21)]
    schedule = CacheSchedule(sigmas, plan, schedule_steps=N, first_step=10,
                             positions=positions)
    assert schedule.planner.n_steps == 10
    for local in range(1, 10):
        for gap in range(1, local + 1):
            assert schedule.planner.reference(local, gap) == pytest.approx(
                whole.reference(10 + local, gap))
    record = schedule.enter(0)
    schedule.enter(1)  # the rate is fixed when the next step arrives
    assert record.computed and record.rate == schedule.planner.gap(0, 1.0)
