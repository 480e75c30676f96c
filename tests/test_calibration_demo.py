"""Tier 2: calibration on the shipped demo model, through the real host and samplers.

The calibrated plan (docs/calibration.md) is fitted on calibration seeds with AdaCache Apply's
``calibrate`` preset and judged on other seeds against the uniform schedule of the same number
of computed steps: what the adaptivity is worth. (The full measurement is ``make
bench-quality``; this is its smallest version, a few seconds on CPU.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import fixed_schedule, psnr  # noqa: E402

MODEL = ROOT / "models" / "diffusion_models" / "adacache_demo_wan.safetensors"
STEPS, CFG = 30, 3.0
SCENES = ("static", "fast motion")


@pytest.fixture(scope="module")
def demo():
    import comfy.sample
    import comfy.sd
    from comfyui_adacache.adacache import AdaCacheConfig, CalibrationSample, calibrate
    from comfyui_adacache.nodes import demo_latent, demo_nodes
    from comfyui_adacache.nodes.patch import apply_adacache

    model = comfy.sd.load_diffusion_model(str(MODEL))
    latent = torch.zeros(1, 16, demo_latent.FRAMES, demo_latent.LATENT_HW, demo_latent.LATENT_HW)

    def sample(config, scene, seed):
        patched = model if config is None else apply_adacache(model, config)
        pos, neg = demo_nodes.AdaCacheDemoScene.execute(scene).args
        noise = comfy.sample.prepare_noise(latent, seed)
        out = comfy.sample.sample(patched, noise, STEPS, CFG, "euler", "simple", pos, neg,
                                  latent, seed=seed, disable_pbar=True)
        handle = patched.model_options.get("transformer_options", {}).get("adacache_handle")
        rgb = demo_latent.to_uint8(demo_nodes.decode_latent(out)).numpy()
        return rgb, (handle.summary_for(out) if handle else None)

    calibration = AdaCacheConfig(preset="calibrate")
    samples = [
        CalibrationSample.from_dict(sample(calibration, scene, seed)[1]["calibration_sample"])
        for scene in SCENES for seed in (0, 1)
    ]
    return sample, samples, AdaCacheConfig, calibrate


def uniform(computed):
    inner = np.linspace(1, STEPS - 2, computed - 2)[1:-1]
    return tuple(sorted({0, 1, STEPS - 2, STEPS - 1, *(int(round(x)) for x in inner)}))


def test_calibration_runs_compute_every_step_and_record_gap_changes(demo):
    _, samples, _, _ = demo
    for s in samples:
        assert s.n_steps == STEPS and s.distances[0] is None
        assert all(d is not None and d > 0 for d in s.distances[1:])
        assert all(m is not None for m in s.motions[1:])  # motion even with MoReg off
        assert [len(row) for row in s.gap_distances[1:6]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("speed", [3.0, 4.0])
def test_the_calibrated_plan_beats_the_uniform_schedule_on_held_out_seeds(demo, speed):
    sample, samples, config, calibrate = demo
    plan = calibrate(samples, speed).plan
    gains = []
    for scene in SCENES:
        reference, _ = sample(None, scene, 50)
        cached, summary = sample(config(preset="custom", plan=plan), scene, 50)
        computed = summary["computed_steps"]
        assert computed <= STEPS / speed + 1
        uniform_steps = fixed_schedule(uniform(computed))
        same_steps, _ = sample(config(preset="custom", codebook=uniform_steps), scene, 50)
        gains.append(psnr(cached, reference) - psnr(same_steps, reference))
    assert sum(gains) / len(gains) > 0.25, gains  # +1.3 dB with 16 calibration runs (bench)
