"""Tier 1: the compute/reuse decisions with codebooks whose rate depends on the distance.

Each test works its expected schedule out by hand from algorithm.md (sections 2-5) and names the
mistake it catches. Runs are driven without a model: ``Residuals`` plays the metric block of a
one-block Wan stack, so distance and motion are exactly what a test asks for.
"""

from __future__ import annotations

import pytest
import torch
from comfyui_adacache.adacache import (
    AdaCacheConfig,
    AdaCacheRun,
    CacheSchedule,
    Codebook,
    MoRegSettings,
    MotionRegularizer,
    StreamKey,
    preset_codebook,
)
from comfyui_adacache.adacache.families.wan import WAN

# distance < 0.05: reuse 2 steps (rate 3); < 0.15: 1 step (rate 2); above: compute every step
THREE_RATES = Codebook((0.05, 0.15, 1.0), (3, 2, 1))
LATENT = (1, 16, 2, 4, 4)  # a Wan latent of 2 frames x 2x2 tokens (patch 1x2x2): 8 tokens
# m' = m / 0.25 (p = 1): a motion score of 0.5 doubles the distance; no gradient term
DOUBLING_MOREG = MoRegSettings(norm_a=0.25, norm_p=1.0, gradient_scale=0.0)


def even_sigmas(n: int) -> list[float]:
    return [1 - i / n for i in range(n + 1)]


class Residuals:
    """The metric block's residual: frame 0 at ``level``, frame 1 at ``level * spread``.

    The block runs only on compute steps. At compute step s after compute step p the level is
    multiplied by ``1 + change(s) * (s - p)``, so the relative L1 change over the gap is
    ``change(s) * (s - p)`` and the distance per step exactly ``change(s)``. The motion score
    is ``(spread - 1) / (spread + 1)`` (0.5 for spread 3).
    """

    def __init__(self, change, spread: float = 1.0):
        self.change, self.spread = change, spread
        self.level, self.last = 1.0, None

    def block(self, step: int):
        def run_inner(args):
            if self.last is not None:
                self.level *= 1 + self.change(step) * (step - self.last)
            self.last = step
            frames = torch.tensor([self.level, self.level * self.spread]).repeat_interleave(4)
            return {"img": args["img"] + frames.view(1, 8, 1).expand(1, 8, 4)}

        return run_inner


def sample(run: AdaCacheRun, residuals: Residuals, compute_reasons=None) -> dict:
    """One evaluation per step of ``run``, as a sampler makes them; returns the summary."""
    for step in range(run.schedule.n_steps):
        run.begin_call(run.schedule.sigmas[step], [StreamKey(0)], LATENT,
                       compute_reason=(compute_reasons or {}).get(step))
        out = run.block(0, {"img": torch.zeros(1, 8, 4)}, residuals.block(step))
        run.stack_output(out["img"])  # what Wan's head hook reports
        run.end_call()
    return run.finish()


def rates(run: AdaCacheRun) -> list[int | None]:
    return [r.rate for r in run.schedule.trace]


# -- the distance (algorithm.md 2) -------------------------------------------------------------
def test_the_distance_is_the_change_per_step_over_the_gap():
    """Catches the run's distance not divided by the gap (runtime ``_measure``): a change of
    0.24 over 3 reused steps is 0.08 per step (rate 2), not 0.24 (rate 1).

    0 warm-up (rate 1), 1 warm-up: 0.02 -> rate 3, next 4; 4: 0.08 -> rate 2, next 6;
    6: 0.20 -> rate 1, next 7; 7: 0.01 -> rate 3, next 10; 10 and 11 final.
    """
    change = {1: 0.02, 4: 0.08, 6: 0.20}
    config = AdaCacheConfig(preset="custom", codebook=THREE_RATES)
    run = AdaCacheRun(config, WAN, 1, even_sigmas(12))
    summary = sample(run, Residuals(lambda s: change.get(s, 0.01)))
    trace = run.schedule.trace
    assert summary["pattern"] == "CC..C.CC..CC"
    assert trace[4].distance == pytest.approx(0.08) and trace[6].distance == pytest.approx(0.20)
    assert rates(run) == [1, 3, None, None, 2, None, 1, 3, None, None, 3, 3]


def test_a_step_computed_for_another_reason_measures_and_picks_the_next_rate():
    """Catches a forced compute step (ControlNet hints mid-run) that keeps the rate chosen
    before it: its own measurement (0.20 per step over 2 steps) sets rate 1.

    1: 0.01 -> rate 3 (next 4); 3 forced: 0.20 -> rate 1, next 4; 4: 0.01 -> rate 3, next 7;
    7: rate 3, next 10; 10 and 11 final.
    """
    config = AdaCacheConfig(preset="custom", codebook=THREE_RATES)
    run = AdaCacheRun(config, WAN, 1, even_sigmas(12))
    summary = sample(run, Residuals(lambda s: 0.20 if s == 3 else 0.01),
                     compute_reasons={3: "ControlNet hints"})
    trace = run.schedule.trace
    assert summary["pattern"] == "CC.CC..C..CC"
    assert trace[3].reason == "ControlNet hints" and trace[3].distance == pytest.approx(0.20)
    assert rates(run) == [1, 3, None, 1, 3, None, None, 3, None, None, 3, 3]


def test_the_papers_fast_codebook_follows_the_measured_distance():
    """Catches a rate that does not follow the distance through the paper's six-entry
    codebook, or steps outside the cache range that do not measure.

    Fast, 30 steps: {0.08: 6, 0.16: 5, 0.24: 4, 0.32: 3, 0.40: 2, 1: 1}; caching from sigma
    0.75, so steps 2-7 are computed (outside range). 7: 0.05 -> rate 6, next 13;
    13: 0.05 -> 6, next 19; 19: 0.30 -> 3, next 22; 22-27: 0.90 -> 1; 28 and 29 final.
    """
    codebook = preset_codebook("fast", 30)
    schedule = CacheSchedule(even_sigmas(30), codebook, cache_sigma_range=(0.75, 0.0))
    distance = {**dict.fromkeys(range(15), 0.05), **dict.fromkeys(range(15, 22), 0.30)}
    last = None
    for step in range(30):
        if schedule.enter(step).computed:
            if last is not None:
                schedule.measure(distance.get(step, 0.90), step - last, None)
            last = step
    schedule.close()
    assert schedule.pattern() == "CCCCCCCC.....C.....C..CCCCCCCC"
    assert [schedule.trace[s].rate for s in (7, 13, 19, 22, 27)] == [6, 6, 3, 1, 1]
    assert [r.reason for r in schedule.trace[1:9]] == ["warm-up", *["outside range"] * 6,
                                                       "cached"]


# -- MoReg (algorithm.md 5) --------------------------------------------------------------------
def test_falling_motion_raises_the_distance_too():
    """Catches a signed MoReg gradient (``m' + mg`` instead of ``m' + |mg|``): motion falling
    from m' = 2 to 1 over 2 steps gives mg = 10 * (1 - 2) / 2 = -5 and factor 1 + 5 = 6, not -4
    (a negative distance, which would reuse the most).

    20 steps, window [3, 16), distance 0.03 per step. 1: outside, 0.03 -> rate 3, next 4;
    4: m' = 2, no gradient yet: 0.06 -> rate 2, next 6; 6: m' = 1, factor 6: 0.18 -> rate 1;
    7: factor 1 -> rate 3, next 10; 10, 13, 16 -> rate 3; 18 and 19 final.
    """
    moreg = MoRegSettings(norm_a=0.25, norm_p=1.0)  # m' = 4 m, gradient scale 10
    schedule = CacheSchedule(even_sigmas(20), THREE_RATES, moreg)
    last = None
    for step in range(20):
        if schedule.enter(step).computed:
            if last is not None:
                schedule.measure(0.03, step - last, 0.5 if step < 6 else 0.25)
            last = step
    schedule.close()
    trace = schedule.trace
    assert [trace[s].moreg_factor for s in (1, 4, 6, 7)] == pytest.approx([1.0, 2.0, 6.0, 1.0])
    assert trace[6].regularized_distance == pytest.approx(0.18) and trace[6].rate == 1
    assert schedule.pattern() == "CC..C.CC..C..C..C.CC"


def test_the_moreg_window_of_a_slice_is_counted_in_the_whole_schedule():
    """Catches a KSamplerAdvanced slice whose MoReg window ignores where it starts
    (``first_step``): the second half of 20 steps is steps 10-19 of the whole schedule, whose
    window is [3, 16), so slice steps 0-5 are inside (factor 2) and 6-9 outside (factor 1),
    not the other way round.

    Distance 0.04 per step, motion 0.5 (m' = 2). 1: 0.08 -> rate 2, next 3; 3, 5: rate 2;
    7 (step 17, outside): 0.04 -> rate 3; 8 and 9 final.
    """
    config = AdaCacheConfig(preset="custom", codebook=THREE_RATES, moreg=DOUBLING_MOREG)
    sigmas = [0.5 - i / 20 for i in range(11)]
    run = AdaCacheRun(config, WAN, 1, sigmas, schedule_steps=20, first_step=10,
                      positions=sigmas)
    summary = sample(run, Residuals(lambda s: 0.04, spread=3.0))
    trace = run.schedule.trace
    assert [trace[s].moreg_factor for s in (1, 3, 5, 7)] == pytest.approx([2.0, 2.0, 2.0, 1.0])
    assert summary["pattern"] == "CC.C.C.CCC"
    assert rates(run)[:8] == [1, 2, None, 2, None, 2, None, 3]


def test_a_calibrated_motion_reference_is_resampled_to_the_run_length():
    """Catches a calibrated MoReg reference read at the run's step number: recorded at 31
    steps, used at 61, step 21 sits at calibration step 10.5 (reference 0.205), not at entry
    21 (0.31). Motion 0.41 there is twice the calibrated motion: m' = 2.
    """
    reference = tuple(0.1 + 0.01 * i for i in range(31))
    settings = MoRegSettings(norm_p=1.0, gradient_scale=0.0, reference=reference)
    factor, normalized = MotionRegularizer(settings, n_steps=61).factor(21, 0.41, 1)
    assert normalized == pytest.approx(2.0) and factor == pytest.approx(2.0)


def test_a_slice_reads_the_calibrated_motion_at_its_noise_position():
    """Catches a calibrated MoReg reference read by step (or fraction of the schedule) instead
    of by noise-schedule position, on the second half of a 20-step schedule.

    Calibrated at positions 1, .8, .6, .4, .2 with motions .1 .. .5; slice step 1 sits at
    position 0.45, calibration step 2.75: reference 0.375, so motion 0.75 gives m' = 2 (by
    fraction of the schedule it would be 11/19 * 4 = 2.32: 0.332, m' = 2.26). Distance 0.07 per
    step -> 0.14: rate 2 (with 2.26: 0.158, rate 1).
    """
    moreg = MoRegSettings(norm_p=1.0, gradient_scale=0.0, reference=(0.1, 0.2, 0.3, 0.4, 0.5),
                          reference_positions=(1.0, 0.8, 0.6, 0.4, 0.2))
    sigmas = [0.5 - i / 20 for i in range(11)]
    schedule = CacheSchedule(sigmas, THREE_RATES, moreg, schedule_steps=20, first_step=10,
                             positions=sigmas)
    schedule.enter(0)
    schedule.enter(1)
    schedule.measure(0.07, 1, 0.75)
    schedule.enter(2)  # step 1's rate is fixed when the next step arrives
    record = schedule.trace[1]
    assert record.moreg_factor == pytest.approx(2.0)
    assert record.regularized_distance == pytest.approx(0.14) and record.rate == 2


# -- when the rate is fixed ----------------------------------------------------------------------
def test_the_rate_is_fixed_when_the_measurement_arrives():
    """Catches a rate chosen lazily (when the next step arrives): right after step 1's measure
    its record holds the rate (0.02 -> 3) and the schedule its next compute step (4)."""
    schedule = CacheSchedule(even_sigmas(12), THREE_RATES)
    schedule.enter(0)
    schedule.enter(1)
    record = schedule.measure(0.02, 1, None)
    assert record is schedule.trace[1] and record.rate == 3 and schedule.next_compute == 4
    assert record.distance == pytest.approx(0.02)


def test_streams_measured_in_separate_calls_give_the_mean_once():
    """Catches a step whose streams arrive in several calls (cond and uncond apart, context
    windows) deciding on the first stream alone, or advancing MoReg's gradient once per stream.

    Step 1: 0.02 alone is rate 3; with the second stream's 0.20 the mean 0.11 is rate 2. With
    a gradient term (m' = 4 m, scale 10), every step's factor is that of its streams' mean
    motion against the previous compute step's, as when the streams arrive in one call.
    """
    schedule = CacheSchedule(even_sigmas(12), THREE_RATES)
    schedule.enter(0)
    schedule.enter(1)
    assert schedule.measure(0.02, 1, None).rate == 3
    assert schedule.measure(0.20, 1, None).rate == 2 and schedule.next_compute == 3

    def factors(split: bool) -> list:
        moreg = MoRegSettings(norm_a=0.25, norm_p=1.0, window_start=0.0, window_end=1.0)
        schedule = CacheSchedule(even_sigmas(20), THREE_RATES, moreg)
        for step in range(8):
            if schedule.enter(step).computed and step:
                measures = [(0.01, 1, 0.25), (0.01, 1, 0.5 if step < 6 else 0.75)]
                if split:
                    for measure in measures:
                        schedule.measure(*measure)
                else:
                    schedule.measure_all(measures)
        return [r.moreg_factor for r in schedule.trace]

    assert factors(split=True) == factors(split=False)
    assert factors(split=False)[4] == pytest.approx(1.5)  # m' = 4 * 0.375, no gradient yet


def test_a_calibration_run_is_complete_without_closing_its_schedule():
    """Catches a last step whose change is known only once the schedule is closed (the
    calibration recorder closed it itself): every step's change is in the sample as soon as
    its step was measured."""
    run = AdaCacheRun(AdaCacheConfig(preset="calibrate"), WAN, 1, even_sigmas(6))
    residuals = Residuals(lambda s: 0.03)
    for step in range(6):
        run.begin_call(run.schedule.sigmas[step], [StreamKey(0)], LATENT)
        out = run.block(0, {"img": torch.zeros(1, 8, 4)}, residuals.block(step))
        run.stack_output(out["img"])
        run.end_call()
    distances = run.calibration_sample().distances
    assert distances[0] is None and distances[1:] == pytest.approx([0.03] * 5, rel=1e-4)
    assert [r.rate for r in run.schedule.trace][1:] == [1] * 5


def test_a_continued_calibration_finds_each_stream_again_by_cond_or_uncond():
    """Work units run cond and uncond on their own threads, so the next slice of a schedule
    may bring them in the other order (with new uuids): each continues its own recorder."""
    from comfyui_adacache.adacache.calibration import CalibrationSample
    from comfyui_adacache.adacache.recording import CalibrationRecording

    cond, uncond = torch.ones(4, 2), torch.full((4, 2), 10.0)
    sample = CalibrationSample((None,), (None,), ((),))

    def next_slice(roles: bool) -> CalibrationRecording:
        first = CalibrationRecording("l1")
        first.add(StreamKey("uuid-a", role=0 if roles else None), 0, {1: cond})
        first.add(StreamKey("uuid-b", role=1 if roles else None), 0, {1: uncond})
        second = CalibrationRecording("l1", first.carry_on(sample))
        second.add(StreamKey("uuid-c", role=1 if roles else None), 0, {1: uncond * 1.1})
        second.add(StreamKey("uuid-d", role=0 if roles else None), 0, {1: cond * 1.1})
        return second

    assert next_slice(roles=True).gap_rows[0] == [pytest.approx((0.1,)), pytest.approx((0.1,))]
    blind = next_slice(roles=False).gap_rows[0]  # the order of appearance alone mixes them up
    assert blind[0][0] > 1 and blind[1][0] < 0.95
