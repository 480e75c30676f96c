"""Tier 1: the pure-torch core (no ComfyUI model involved)."""

from __future__ import annotations

import math

import pytest
import torch
from comfyui_adacache.adacache import (
    AdaCacheConfig,
    CacheSchedule,
    Codebook,
    CodebookError,
    MetricBlocksError,
    MoRegSettings,
    MotionRegularizer,
    calibrated_codebook,
    equivalent_steps,
    motion_score,
    parse_metric_blocks,
    preset_codebook,
    preview_schedule,
    relative_distance,
    step_of_sigma,
)

FAST30 = {0.08: 6, 0.16: 5, 0.24: 4, 0.32: 3, 0.40: 2, 1.00: 1}
FAST100 = {0.03: 12, 0.05: 10, 0.07: 8, 0.09: 6, 0.11: 4, 1.00: 3}
SLOW30 = {0.08: 3, 0.16: 2, 0.24: 1, 0.32: 1, 0.40: 1, 1.00: 1}


# -- codebook --------------------------------------------------------------------------------
def test_presets_reproduce_the_papers_codebooks():
    assert preset_codebook("fast", 30) == Codebook.from_pairs(FAST30)
    assert preset_codebook("fast", 100) == Codebook.from_pairs(FAST100)
    assert preset_codebook("slow", 30) == Codebook.from_pairs(SLOW30)
    assert preset_codebook("medium", 100).rates[:5] == (8, 6, 4, 2, 1)  # Table 3f
    assert preset_codebook("slow", 100).rates[:2] == (2, 1)  # Table 3f


@pytest.mark.parametrize("steps", [4, 8, 12, 20, 25, 50, 75, 150, 500, 1000])
@pytest.mark.parametrize("name", ["fast", "medium", "slow"])
def test_presets_scale_to_any_step_count(name, steps):
    cb = preset_codebook(name, steps)  # validates: thresholds strictly increasing, rates >= 1
    lo, hi = preset_codebook(name, 30), preset_codebook(name, 100)
    if 30 < steps < 100:  # between the anchors every entry lies between the anchors' entries
        for t, a, b in zip(cb.thresholds[:-1], lo.thresholds, hi.thresholds, strict=False):
            assert b <= t <= a
        for r, a, b in zip(cb.rates, lo.rates, hi.rates, strict=False):
            assert min(a, b) <= r <= max(a, b)


def test_more_steps_mean_smaller_thresholds_and_fast_never_slower_than_slow():
    for steps in (10, 30, 60, 100, 200):
        fast, slow = preset_codebook("fast", steps), preset_codebook("slow", steps)
        assert all(f >= s for f, s in zip(fast.rates, slow.rates, strict=True))
    assert preset_codebook("fast", 50).thresholds[0] < preset_codebook("fast", 20).thresholds[0]


def test_rate_lookup_uses_first_threshold_above_and_last_as_catch_all():
    cb = Codebook.from_pairs(FAST30)
    assert cb.rate_for(0.0) == 6
    assert cb.rate_for(0.0799) == 6
    assert cb.rate_for(0.08) == 5
    assert cb.rate_for(0.39) == 2
    assert cb.rate_for(0.99) == 1
    assert cb.rate_for(50.0) == 1


def test_json_round_trip():
    cb = preset_codebook("medium", 42)
    assert Codebook.from_json(cb.to_json()) == cb
    assert Codebook.from_text("0.1, 0.2 ,1", "4,2, 1") == Codebook((0.1, 0.2, 1.0), (4, 2, 1))


@pytest.mark.parametrize(
    ("thresholds", "rates", "message"),
    [
        ("", "", "empty"),
        ("0.1, 0.2", "3", "2 thresholds but 1 rates"),
        ("0.2, 0.1", "3, 1", "threshold 2 (0.1) is not greater than threshold 1 (0.2)"),
        ("0.1, 0.1", "3, 1", "threshold 2 (0.1) is not greater"),
        ("0.1, abc", "3, 1", "threshold 2 ('abc') is not a number"),
        ("0.1, 0.2", "3, 1.5", "rate 2 ('1.5') must be an integer >= 1"),
        ("0.1, 0.2", "0, 1", "rate 1 ('0') must be an integer >= 1"),
        ("0.1, 0.2", "3, x", "rate 2 ('x') is not a number"),
        ("-0.1, 0.2", "3, 1", "threshold 1 (-0.1) must be a finite number > 0"),
        ("0.1, inf", "3, 1", "threshold 2 (inf) must be a finite number > 0"),
        ("0.1,, 0.2", "3, 1", "thresholds: entry 2 is empty"),
    ],
)
def test_invalid_codebooks_name_the_bad_entry(thresholds, rates, message):
    with pytest.raises(CodebookError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Codebook.from_text(thresholds, rates)


def test_invalid_json_codebooks():
    with pytest.raises(CodebookError, match="unparsable"):
        Codebook.from_json("{nope")
    with pytest.raises(CodebookError, match='"thresholds" and "rates"'):
        Codebook.from_json('{"thresholds": [0.1]}')
    with pytest.raises(CodebookError, match=r"rate 1 \(True\)"):
        Codebook.from_json('{"thresholds": [0.1], "rates": [true]}')


def test_custom_preset_needs_a_codebook_and_unknown_preset_is_refused():
    with pytest.raises(CodebookError, match="Codebook Editor"):
        AdaCacheConfig(preset="custom")
    with pytest.raises(CodebookError, match="unknown preset"):
        preset_codebook("turbo", 30)


def test_calibration_splits_the_observed_range_uniformly():
    cb = calibrated_codebook([0.1, 0.5, 0.3, 0.2], (4, 3, 2, 1))
    assert cb.thresholds[:3] == pytest.approx((0.2, 0.3, 0.4))
    assert cb.rates == (4, 3, 2, 1)
    assert calibrated_codebook([0.1], (2, 1)) is None


# -- metrics ---------------------------------------------------------------------------------
def test_relative_distances():
    prev = torch.tensor([1.0, -2.0, 3.0, 0.0])
    cur = torch.tensor([1.5, -2.0, 2.0, 0.5])
    assert relative_distance(cur, prev, "l1") == pytest.approx(2.0 / 6.0)
    assert relative_distance(cur, prev, "l2") == pytest.approx(math.sqrt(1.5) / math.sqrt(14))
    assert relative_distance(prev, prev, "cosine") == pytest.approx(0.0, abs=1e-6)
    assert relative_distance(-prev, prev, "cosine") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown metric"):
        relative_distance(cur, prev, "l3")


def test_motion_score_on_frames():
    static = torch.ones(1, 4, 6, 8)
    assert motion_score(static) == 0.0
    moving = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 6, 8) + 1
    # frames 1..4: |diffs| sum = 3*48, norms (2+3+4)*48 + (1+2+3)*48 = 15*48
    assert motion_score(moving) == pytest.approx(3 / 15)
    assert motion_score(moving, strides=(1, 2)) == pytest.approx((3 / 15 + 4 / 10) / 2)
    assert motion_score(torch.ones(1, 1, 6, 8)) is None  # an image: no motion term


def test_moreg_factor_reference_constants_window_and_gradient():
    reg = MotionRegularizer(MoRegSettings(), n_steps=30)
    assert reg.settings.window_steps(30) == (3, 26)  # the reference's 4..26, from 1
    assert reg.factor(1, 0.5, 1) == (1.0, None)  # outside the window
    f1, m1 = reg.factor(5, 0.385, 2)
    assert m1 == pytest.approx(1.0) and f1 == pytest.approx(1.0)  # neutral motion, no gradient
    f2, m2 = reg.factor(7, 0.385 * 2 ** (1 / 8), 2)  # m' doubles: mg = 10 * (2 - 1) / 2
    assert m2 == pytest.approx(2.0) and f2 == pytest.approx(2.0 + 5.0)
    with pytest.raises(ValueError, match="strides"):
        MoRegSettings(strides=(0,))


# -- schedule --------------------------------------------------------------------------------
def test_step_identity_from_sigmas():
    sigmas = [1.0, 0.8, 0.5, 0.2, 0.0]
    assert [step_of_sigma(sigmas, s) for s in sigmas[:-1]] == [0, 1, 2, 3]
    assert step_of_sigma(sigmas, 0.65) == 1  # a midpoint (dpmpp_2s_ancestral)
    assert step_of_sigma(sigmas, 1.3) == 0  # above the schedule
    assert step_of_sigma(sigmas, 0.05) == 3
    assert step_of_sigma(sigmas, 0.8 * (1 + 1e-7)) == 1  # float noise


def test_equivalent_steps_for_partial_schedules():
    full = [1000 - 50 * i for i in range(21)]
    assert equivalent_steps(full, 1000) == pytest.approx(20)
    assert equivalent_steps(full[:11], 1000) == pytest.approx(20)  # first half of 20 steps
    assert equivalent_steps(full[10:], 1000) == pytest.approx(20)


def reference_rule(distances, codebook, n):
    """The codebook rule written out directly (algorithm.md 3-4)."""
    computed, next_compute = [], 0
    for step in range(n):
        if step < 2 or step >= n - 2 or step >= next_compute:
            computed.append(step)
            next_compute = step + (1 if step == 0 else codebook.rate_for(distances[step]))
    return computed


@pytest.mark.parametrize("seed", range(6))
def test_schedule_follows_the_codebook_rule_exactly(seed):
    g = torch.Generator().manual_seed(seed)
    n = 30
    distances = (torch.rand(n, generator=g) * 0.5).tolist()
    cb = preset_codebook("fast", n)
    assert preview_schedule(distances, cb, n) == reference_rule(distances, cb, n)


def test_schedule_extremes():
    cb = preset_codebook("fast", 30)
    assert preview_schedule([0.0] * 30, cb, 30) == [0, 1, 7, 13, 19, 25, 28, 29]
    assert preview_schedule([5.0] * 30, cb, 30) == list(range(30))
    never = Codebook((1.0,), (1,))
    assert preview_schedule([0.0] * 10, never, 10) == list(range(10))


def test_schedule_moreg_and_sigma_range():
    sigmas = [1 - i / 30 for i in range(31)]
    sched = CacheSchedule(sigmas, preset_codebook("fast", 30), MoRegSettings(),
                          cache_sigma_range=(0.89, 0.0))
    for step in range(6):
        rec = sched.enter(step)
        if rec.computed and step:
            sched.measure(0.01, 1, 0.385 * 2 ** (1 / 8) if step >= 3 else 0.1)
    sched.close()
    t = sched.trace
    assert [r.reason for r in t[:4]] == ["warm-up", "warm-up", "outside range", "outside range"]
    assert t[2].moreg_factor == 1.0  # step 2 < window start (3)
    assert t[3].moreg_factor == pytest.approx(2.0)  # m' = 2, no gradient yet
    assert t[3].regularized_distance == pytest.approx(0.02)


def test_metric_block_parsing():
    assert parse_metric_blocks("middle", 28) == (14,)
    assert parse_metric_blocks("first, last", 28) == (0, 27)
    assert parse_metric_blocks("13, -1, 13", 28) == (13, 27)
    with pytest.raises(MetricBlocksError, match=r"entry 2 \('foo'\)"):
        parse_metric_blocks("3, foo", 28)
    with pytest.raises(MetricBlocksError, match=r"entry 1 \('40'\) is outside the stack of 28"):
        parse_metric_blocks("40", 28)


def test_a_forced_compute_reason_turns_a_cached_step_into_a_computed_one():
    from comfyui_adacache.adacache import REUSE, AdaCacheRun, StreamKey, format_trace
    from comfyui_adacache.adacache.families.wan import WAN

    config = AdaCacheConfig(preset="custom", codebook=Codebook((1.0,), (4,)))
    run = AdaCacheRun(config, WAN, 4, [1 - i / 10 for i in range(11)])
    g = torch.Generator().manual_seed(0)
    modes = []
    for step in range(10):
        reason = "ControlNet hints" if step == 3 else None
        modes.append(run.begin_call(1 - step / 10, [StreamKey(0)], (1, 16, 2, 4, 4),
                                    compute_reason=reason))
        args = {"img": torch.randn(1, 8, 4, generator=g)}
        for position in range(4):  # the four blocks of the stack, each adding 1
            args = run.block(position, args, lambda a: {"img": a["img"] + 1})
        run.stack_output(args["img"])  # what Wan's head hook reports
        run.end_call()
    trace = run.schedule.trace
    assert modes[2] == REUSE and modes[3] == "compute"
    assert trace[3].computed and trace[3].reason == "ControlNet hints"
    assert trace[3].call_plans == [{"mode": "compute", "reason": "ControlNet hints"}]
    assert trace[2].call_plans == [{"mode": "reuse", "reason": "cached"}]
    assert any("ControlNet hints" in w for w in run.warnings)
    summary = run.finish()
    assert summary["call_reasons"]["compute: ControlNet hints"] == 1
    assert "compute (ControlNet hints)" in format_trace(summary).splitlines()[4]


def test_only_residuals_of_the_last_compute_step_are_reused():
    from comfyui_adacache.adacache import AdaCacheRun, StreamKey
    from comfyui_adacache.adacache.families.wan import WAN

    config = AdaCacheConfig(preset="custom", codebook=Codebook((1.0,), (4,)))
    run = AdaCacheRun(config, WAN, 1, [1 - i / 12 for i in range(13)])
    cond, uncond = StreamKey("cond"), StreamKey("uncond")
    plans = {}
    for step in range(8):  # computes 0, 1, 5; the negative is not evaluated at step 5
        keys = [cond] if step == 5 else [cond, uncond]
        run.begin_call(1 - step / 12, keys, (len(keys), 16, 2, 4, 4))
        out = run.block(0, {"img": torch.ones(len(keys), 8, 4)}, lambda a: {"img": a["img"] * 2})
        run.stack_output(out["img"])
        plans[step] = dict(run.schedule.trace[step].call_plans[0])
        run.end_call()
    assert plans[2] == {"mode": "reuse", "reason": "cached"}
    assert plans[5] == {"mode": "compute", "reason": "scheduled"}
    assert plans[6] == {"mode": "compute", "reason": "stale cache"}  # uncond from step 1
    assert run.streams[uncond].step == 6
