"""A schedule that holds where it was not tuned: real tensor sizes, sampler slices, bounded
plans and self-describing calibrations (issue 13). Pure-core cases first, then the real host
and the shipped demo model."""

from __future__ import annotations

import pytest
import torch
from comfyui_adacache.adacache import (
    AdaCacheConfig,
    AdaCacheRun,
    CacheSchedule,
    CalibratedPlan,
    CalibrationSample,
    MoRegSettings,
    StreamKey,
    calibrate,
)
from comfyui_adacache.adacache.calibration import align
from comfyui_adacache.adacache.families.wan import WAN
from comfyui_adacache.adacache.metrics import metric_sample, relative_distance
from comfyui_adacache.adacache.plan import RATIO_RANGE, Planner, default_max_gap, even_positions
from comfyui_adacache.adacache.summary import plan_mismatch
from test_calibration import node
from test_plan import rising_profile
from wan_fixtures import handle_of, summary_of

N = 30


def sample_from(profile, scale=1.0, positions=(), setup=None):
    return CalibrationSample(
        distances=(None, *(row[0] * scale for row in profile[1:])),
        motions=(None, *([0.15] * (len(profile) - 1))),
        gap_distances=((), *(tuple(v * scale for v in row) for row in profile[1:])),
        positions=positions, setup=setup,
    )


def plan(speed=3.0, **setup):
    return calibrate([sample_from(rising_profile(), setup=setup or None)], speed).plan


# --- one estimator at every size -------------------------------------------------------------


def full_relative_l1(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> float:
    """The whole tensor's relative L1, reduced in fp32 chunks (the reference)."""
    num = den = 0.0
    for x, y in zip(a.split(chunk, dim=1), b.split(chunk, dim=1), strict=True):
        num += (x.float() - y.float()).abs().sum().item()
        den += y.float().abs().sum().item()
    return num / den


def test_calibration_and_run_measure_the_same_change_at_wan_480p():
    """Wan 480p x 81 frames: 32,760 tokens x 1536 channels, two outlier channels 100x larger.
    The calibration recorder and the cached run's distance see the same metric sample, and
    it agrees with the whole tensor (the old recorder kept channels 0 and 768 only)."""
    tokens, dim = 32760, 1536
    g = torch.Generator().manual_seed(0)
    scale = torch.ones(dim)
    scale[[7, 900]] = 100.0
    residuals = []
    base = torch.randn(1, tokens, dim, generator=g) * scale
    for step in range(3):  # the outliers barely move, the rest changes by ~10 % a step
        change = torch.randn(1, tokens, dim, generator=g) * 0.1 * step
        change[..., [7, 900]] *= 0.001
        residuals.append((base + change).to(torch.bfloat16))
    run = AdaCacheRun(AdaCacheConfig(preset="calibrate"), WAN, 1,
                      [1.0 - i / 3 for i in range(4)])
    hidden = torch.zeros(1, tokens, dim, dtype=torch.bfloat16)
    for step in range(3):
        run.begin_call(1.0 - step / 3, [StreamKey(0)], (1, 16, 21, 60, 104))
        out = run.block(0, {"img": hidden}, lambda a, r=residuals[step]: {"img": a["img"] + r})
        run.stack_output(out["img"])
        run.end_call()
    run.schedule.close()
    sample = run.calibration_sample()
    for step in (1, 2):
        measured = run.schedule.trace[step].distance  # what a cached run compares
        recorded = sample.gap_distances[step][0]  # what calibration recorded
        assert recorded == pytest.approx(measured, rel=1e-6)
        whole = full_relative_l1(residuals[step], residuals[step - 1])
        assert measured == pytest.approx(whole, rel=0.05), (measured, whole)
    two_steps = full_relative_l1(residuals[2], residuals[0]) / 2
    assert sample.gap_distances[2][1] == pytest.approx(two_steps, rel=0.05)


def test_the_metric_sample_keeps_every_channel_of_a_latent():
    latent = torch.randn(1, 16, 21, 60, 104)  # whole-model mode: channels first
    sample = metric_sample(latent, channels_last=False)
    assert sample.shape == (1024, 16)
    tokens = torch.randn(1, 5000, 64)
    assert metric_sample(tokens).shape == (1024, 64)
    assert metric_sample(tokens).equal(metric_sample(tokens.clone()))  # the same draw each time
    small = torch.randn(1, 300, 64)
    assert relative_distance(metric_sample(small * 1.1), metric_sample(small)) == pytest.approx(
        0.1, rel=1e-5)


# --- a bounded plan ---------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [2.0, 3.0, 6.0])
def test_no_planned_gap_is_longer_than_the_maximum(speed):
    planner = Planner(rising_profile(), speed, even_positions(N), even_positions(N))
    for ratio in (0.01, 0.5, 1.0):
        steps = [0, *planner._plan_from(0, ratio, planner.cost_per_compute)]
        gaps = [b - a for a, b in zip(steps, [*steps[1:], N], strict=True)]
        assert max(gaps) <= default_max_gap(speed)


def test_the_ratio_is_clamped_and_a_zero_factor_is_not_read_as_typical():
    planner = Planner(rising_profile(), 3.0, even_positions(N), even_positions(N))
    low, high = RATIO_RANGE
    assert planner.gap(5, 1e6) == planner.gap(5, high)
    assert planner.gap(5, 1e-9) == planner.gap(5, low)
    assert planner.gap(5, 0.0) == planner.gap(5, 1.0)  # no measurement: as calibrated


def test_steps_outside_the_range_are_computed_and_counted():
    forced = set(range(25, 30))  # end_percent cuts caching at step 25
    planner = Planner(rising_profile(), 3.0, even_positions(N), even_positions(N), forced)
    steps = planner.baseline_steps()
    assert forced <= set(steps)
    assert len(steps) <= N / 3  # the forced steps are part of the budget, not on top of it


def test_a_plan_with_uncalibrated_moreg_is_never_a_skip_everything_schedule():
    """MoReg Settings' reference constants give a factor near 0.0005 on these distances; with
    a calibrated plan they used to compute step 9 and jump to 28."""
    config = AdaCacheConfig(preset="custom", plan=plan(3.0), moreg=MoRegSettings())
    run = AdaCacheRun(config, WAN, 1, [1.0 - i / N for i in range(N + 1)])
    assert run.schedule.regularizer is None
    assert any("MoReg is off for this run" in w for w in run.warnings)
    profile = rising_profile()
    last = None
    for step in range(N):
        record = run.schedule.enter(step)
        if record.computed and last is not None:
            run.schedule.measure(profile[step][min(step - last, len(profile[step])) - 1],
                                 step - last, 0.3)
        last = step if record.computed else last
    run.schedule.close()
    computed = run.schedule.computed_steps
    gaps = [b - a for a, b in zip(computed, [*computed[1:], N], strict=True)]
    assert max(gaps) <= default_max_gap(3.0) and len(computed) >= N / 3 - 2


def test_a_plan_brings_back_its_calibrated_moreg():
    result = calibrate([sample_from(rising_profile())], 3.0, moreg=True)
    restored = CalibratedPlan.from_json(result.plan.to_json())
    assert restored.moreg == result.moreg and restored.moreg.reference
    run = AdaCacheRun(AdaCacheConfig(preset="custom", plan=restored), WAN, 1,
                      [1.0 - i / N for i in range(N + 1)])
    assert run.moreg_settings == result.moreg and run.schedule.regularizer is not None
    assert any("brings back the MoReg calibrated with it" in w for w in run.warnings)


def test_planning_checks_for_interrupts_and_handles_1000_steps():
    class Interrupted(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise Interrupted

    n = 1000
    with pytest.raises(Interrupted):
        Planner(rising_profile(), 3.0, even_positions(n), even_positions(N),
                check_interrupt=check)
    planner = Planner(rising_profile(), 3.0, even_positions(n), even_positions(N))
    steps = planner.baseline_steps()
    assert n / 3 - 10 <= len(steps) <= n / 3


# --- positions, slices and setups -------------------------------------------------------------


def test_a_calibration_on_another_scheduler_is_read_by_position():
    """A run whose steps sit elsewhere in the noise schedule (another scheduler or shift)
    reads the profile at its own positions, not at its step numbers."""
    calibrated = plan(3.0)
    bent = tuple((1.0 - i / N) ** 0.5 for i in range(N + 1))  # more steps near the end
    planner = Planner(calibrated.profile, 3.0, bent, calibrated.positions)
    for step in (5, 15, 25):
        x = (1 - bent[step] ** 1) * N  # its place in the evenly spaced calibration
        lower = calibrated.profile[int(x)][0]
        upper = calibrated.profile[min(int(x) + 1, N - 1)][0]
        assert min(lower, upper) * 0.5 <= planner.reference(step, 1) <= max(lower, upper) * 2


def test_slices_of_one_schedule_align_on_the_whole():
    positions = even_positions(N)
    whole = sample_from(rising_profile(), positions=positions)
    first = CalibrationSample(whole.distances[:15], whole.motions[:15],
                              whole.gap_distances[:15], positions[:16])
    grid, aligned, left_out = align([first, whole])
    assert grid == positions and not left_out
    assert [offset for _, offset in aligned] == [0, 0]
    other = sample_from(rising_profile(20), positions=even_positions(20))  # another step count
    _, aligned, left_out = align([whole, other])
    assert left_out == [other]


def test_a_plan_used_on_another_setup_says_so():
    recorded = {"model": "WanModel", "fingerprint": "aaa", "latent": [16, 21, 60, 104],
                "sampler": "euler", "cfg": 5.0}
    run = {**recorded, "fingerprint": "bbb", "sampler": "uni_pc"}
    (warning,) = plan_mismatch(recorded, run)
    assert "model weights aaa -> bbb" in warning and "sampler euler -> uni_pc" in warning
    assert plan_mismatch(recorded, dict(recorded)) == []
    config = AdaCacheConfig(preset="custom", plan=plan(3.0, **recorded))
    schedule_run = AdaCacheRun(config, WAN, 1, [1.0 - i / N for i in range(N + 1)], setup=run)
    assert any("recorded on another setup" in w for w in schedule_run.warnings)


def test_the_plan_places_its_own_second_and_final_steps():
    schedule = CacheSchedule([float(N - i) for i in range(N + 1)], plan(4.0))
    for step in range(N):
        schedule.enter(step)
    schedule.close()
    assert schedule.computed_steps[0] == 0 and 1 not in schedule.computed_steps
    assert schedule.trace[0].reason == "warm-up"
    assert all(r.reason != "final" for r in schedule.trace)


# --- through the real host: KSamplerAdvanced slices, what a run was recorded on --------------

DEMO = "adacache_demo_wan.safetensors"


@pytest.fixture(scope="module")
def demo():
    from pathlib import Path

    import comfy.sd
    from comfyui_adacache.nodes import adacache_nodes, calibration_nodes, demo_nodes

    path = Path(__file__).resolve().parents[1] / "models" / "diffusion_models" / DEMO
    model = comfy.sd.load_diffusion_model(str(path))
    pos, neg = demo_nodes.AdaCacheDemoScene.execute("fast motion").args
    return model, pos, neg, adacache_nodes, calibration_nodes


def calibrating(demo, preset="calibrate"):
    """The demo model through AdaCache Apply, as ComfyUI's executor runs the node."""
    model, nodes = demo[0], demo[3]
    return node(nodes.AdaCacheApply).execute(
        model, preset, "l1", "middle", 0.0, 1.0, False).args[0]


def advanced(model, pos, neg, start, end, add_noise=True, steps=16):
    import nodes as comfy_nodes
    from comfyui_adacache.nodes import demo_latent

    latent = {"samples": torch.zeros(1, 16, demo_latent.FRAMES, demo_latent.LATENT_HW,
                                     demo_latent.LATENT_HW)}
    return comfy_nodes.KSamplerAdvanced().sample(
        model, "enable" if add_noise else "disable", 3, steps, 3.0, "euler", "simple", pos,
        neg, latent, start, end, "enable" if end < steps else "disable")[0]


def test_two_ksampler_advanced_slices_record_the_same_calibration_as_one_sampler(demo):
    model, pos, neg, _, calibration = demo
    patched = calibrating(demo)
    key = calibration.store_key(patched)
    calibration.STORE.clear(key)
    advanced(patched, pos, neg, 0, 16)
    (single,) = calibration.STORE.runs(key)
    calibration.STORE.clear(key)
    first = advanced(patched, pos, neg, 0, 8)
    import nodes as comfy_nodes

    second = comfy_nodes.KSamplerAdvanced().sample(
        patched, "disable", 3, 16, 3.0, "euler", "simple", pos, neg, first, 8, 16, "disable")
    assert second is not None
    (stitched,) = calibration.STORE.runs(key)  # the second slice continued the first
    a, b = single.sample, stitched.sample
    assert b.n_steps == a.n_steps == 16
    assert b.positions == pytest.approx(a.positions)
    for step in range(1, 16):
        assert len(b.gap_distances[step]) == len(a.gap_distances[step])
        assert b.gap_distances[step] == pytest.approx(a.gap_distances[step], rel=1e-4)
    one, two = calibrate([a], 3.0).plan, calibrate([b], 3.0).plan
    for row_a, row_b in zip(one.profile, two.profile, strict=True):
        assert row_b == pytest.approx(row_a, rel=1e-4)
    calibration.STORE.clear(key)


def test_auto_calibrates_across_ksampler_advanced_slices_then_plans(demo):
    """The first prompt's second slice continues its calibration (it must not plan from the
    first slice's partial run); the whole schedule is recorded once, and the next prompt
    plans from it."""
    import nodes as comfy_nodes

    model, pos, neg, _, calibration = demo
    patched = calibrating(demo, "auto balanced (3x)")
    key = calibration.store_key(patched)
    calibration.STORE.clear(key)
    handle = handle_of(patched)
    first = advanced(patched, pos, neg, 0, 8)
    assert handle.last_summary["computed_steps"] == 8
    comfy_nodes.KSamplerAdvanced().sample(
        patched, "disable", 3, 16, 3.0, "euler", "simple", pos, neg, first, 8, 16, "disable")
    second = handle.last_summary
    assert second["computed_steps"] == 8 and second["preset"] == "calibrate", second["warnings"]
    assert any("auto: calibrating" in w for w in second["warnings"])
    (run,) = calibration.STORE.runs(key)
    assert run.sample.n_steps == 16 and all(
        run.sample.gap_distances[step] for step in range(1, 16)
    )
    advanced(patched, pos, neg, 0, 16)  # the next prompt: the plan of the stitched run
    summary = handle.last_summary
    assert any(w.startswith("auto: the calibrated plan") for w in summary["warnings"])
    assert summary["computed_steps"] < 16
    calibration.STORE.clear(key)


@pytest.mark.parametrize("kind", ["thresholds", "plan"])
def test_the_what_if_on_a_calibration_trace_is_the_schedule_that_runs(demo, kind):
    """One rule: the what-if (schedule.predict_schedule on a recorded calibration run) gives
    exactly the steps a run with that codebook or plan computes, same seed and setup."""
    from comfyui_adacache.adacache import predict_schedule, preset_codebook

    model, pos, neg, nodes, calibration = demo
    patched = calibrating(demo)
    key = calibration.store_key(patched)
    calibration.STORE.clear(key)
    handle = handle_of(patched)
    advanced(patched, pos, neg, 0, 16)
    recorded = handle.last_summary
    sample = calibration.STORE.runs(key)[0].sample
    codebook = (preset_codebook("fast", 16) if kind == "thresholds"
                else calibrate([sample], 3.0).plan)
    prediction = predict_schedule(recorded["trace"], codebook, recorded["sigmas"],
                                  recorded["positions"], sample.gap_distances)
    cached = node(nodes.AdaCacheApply).execute(
        model, "custom", "l1", "middle", 0.0, 1.0, False, codebook=codebook).args[0]
    advanced(cached, pos, neg, 0, 16)
    ran = summary_of(cached)
    assert not prediction.approximate
    assert prediction.computed == [r["step"] for r in ran["trace"] if r["computed"]]
    assert 3 < len(prediction.computed) < 16
    calibration.STORE.clear(key)


def test_a_recorded_run_says_what_it_was_recorded_on(demo):
    model, pos, neg, _, calibration = demo
    patched = calibrating(demo)
    key = calibration.store_key(patched)
    calibration.STORE.clear(key)
    advanced(patched, pos, neg, 0, 16, steps=16)
    (run,) = calibration.STORE.runs(key)
    setup = run.sample.setup
    assert setup["model"] == "WanModel" and setup["sampler"] == "euler"
    assert setup["cfg"] == 3.0 and setup["latent"] == [16, 8, 8, 8] and setup["steps"] == 16
    assert len(run.sample.positions) == 17 and run.sample.positions[0] == pytest.approx(1.0)
    # another Apply on the same model shares the store; other weights get another key
    assert calibration.store_key(calibrating(demo)) == key
    other = model.clone()
    other.add_patches({"diffusion_model.head.head.weight": (torch.ones(1),)}, 0.1)
    assert calibration.store_key(other) != key
    calibration.STORE.clear(key)


def test_auto_calibrates_on_the_first_run_and_runs_the_plan_on_the_next(demo):
    import comfy.sample
    from comfyui_adacache.nodes import demo_latent

    model, pos, neg, _, calibration = demo
    patched = calibrating(demo, "auto balanced (3x)")
    calibration.STORE.clear(calibration.store_key(patched))
    handle = handle_of(patched)
    latent = torch.zeros(1, 16, demo_latent.FRAMES, demo_latent.LATENT_HW, demo_latent.LATENT_HW)

    def run(m, seed):
        noise = comfy.sample.prepare_noise(latent, seed)
        return comfy.sample.sample(m, noise, 30, 3.0, "euler", "simple", pos, neg, latent,
                                   seed=seed, disable_pbar=True)

    first = run(patched, 5)
    summary = handle.last_summary
    assert summary["computed_steps"] == 30
    assert any(w.startswith("auto: calibrating") for w in summary["warnings"])
    assert torch.equal(first, run(model, 5))  # a calibrating run is exactly uncached
    run(patched, 6)  # the first run's record is used now
    summary = handle.last_summary
    assert any(w.startswith("auto: the calibrated plan for 3x") for w in summary["warnings"])
    assert 7 <= summary["computed_steps"] <= 13
    assert len(calibration.STORE.runs(calibration.store_key(patched))) == 1
    calibration.STORE.clear(calibration.store_key(patched))
