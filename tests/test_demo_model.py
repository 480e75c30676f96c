"""The shipped demo model (models/): loads as Wan, its latent mapping is exact, AdaCache adapts.

Runs on CPU in CI in well under a minute (a 1.3 M-parameter model, 128 tokens per video).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from make_example_workflows import DEMO_FILE  # scripts/ is on sys.path (comfy_host)
from wan_fixtures import summary_of

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "diffusion_models" / "adacache_demo_wan.safetensors"
STEPS = 30


@pytest.fixture(scope="module")
def demo():
    from comfyui_adacache.nodes import demo_latent, demo_nodes

    return demo_latent, demo_nodes


@pytest.fixture(scope="module")
def model():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(MODEL))


def test_shipped_files_small_and_detected_as_wan(model):
    assert MODEL.stat().st_size <= 20 * 1024 * 1024
    assert type(model.model).__name__ == "WAN21"
    dm = model.model.diffusion_model
    assert dm.dim == 128 and dm.num_heads == 1 and len(dm.blocks) == 3
    assert float(model.get_model_object("model_sampling").shift) == 8.0


def test_latent_mapping_round_trips_exactly(demo):
    demo_latent, demo_nodes = demo
    g = torch.Generator().manual_seed(3)
    rgb = demo_latent.render_scenes(torch.arange(4), g)
    frames = demo_latent.to_uint8(rgb)
    rgb8 = frames.float() / 255.0
    z = demo_latent.rgb_to_latent(rgb8)
    assert z.shape == (4, 16, demo_latent.FRAMES, demo_latent.LATENT_HW, demo_latent.LATENT_HW)
    assert torch.equal(demo_latent.to_uint8(demo_latent.latent_to_rgb(z)), frames)
    # through ComfyUI's Wan 2.1 latent format, as the sampler hands LATENT to the decode node
    back = demo_nodes.decode_latent(demo_nodes.encode_rgb(rgb8))
    assert torch.equal(demo_latent.to_uint8(back), frames)


def test_scene_node_and_decode_node(demo):
    _, demo_nodes = demo
    out = demo_nodes.AdaCacheDemoScene.execute("fast motion")
    pos, neg = out.args
    assert pos[0][0].shape == (1, 8, 4096) and torch.count_nonzero(neg[0][0]) == 0
    lat = {"samples": torch.zeros(1, 16, 8, 8, 8)}
    frames = demo_nodes.AdaCacheDemoDecode.execute(lat, 2).args[0]
    assert frames.shape == (8, 32, 32, 3)


def test_workflow_links_are_consistent():
    wf = json.loads((ROOT / "workflows" / DEMO_FILE).read_text())
    nodes = {n["id"]: n for n in wf["nodes"]}
    for lid, src, slot, dst, dslot, typ in wf["links"]:
        assert lid in nodes[src]["outputs"][slot]["links"]
        assert nodes[dst]["inputs"][dslot]["link"] == lid
        assert nodes[dst]["inputs"][dslot]["type"] == typ
    assert nodes[1]["widgets_values"][0] == MODEL.name


def _sample(model, scene: str, seed: int, demo):
    import comfy.sample
    from comfyui_adacache.adacache import AdaCacheConfig, MoRegSettings
    from comfyui_adacache.nodes.patch import apply_adacache

    demo_latent, demo_nodes = demo
    pos, neg = demo_nodes.AdaCacheDemoScene.execute(scene).args
    # MoReg with a re-fitted to this model, as in scripts/demo.py (MOREG_DEMO)
    patched = apply_adacache(model, AdaCacheConfig(preset="fast",
                                                   moreg=MoRegSettings(norm_a=0.2)))
    lat = torch.zeros(1, 16, demo_latent.FRAMES, demo_latent.LATENT_HW, demo_latent.LATENT_HW)
    noise = comfy.sample.prepare_noise(lat, seed)
    out = comfy.sample.sample(patched, noise, STEPS, 3.0, "euler", "simple", pos, neg, lat,
                              seed=seed)
    summary = summary_of(patched, out)
    return demo_nodes.decode_latent(out), summary["computed_steps"]


def test_adacache_moreg_static_vs_fast_motion(model, demo):
    demo_latent, _ = demo
    rgb_static, steps_static = _sample(model, "static", 0, demo)
    rgb_fast, steps_fast = _sample(model, "fast motion", 0, demo)
    # the trained model renders the classes with the intended motion ranking ...
    assert demo_latent.motion_score(rgb_static) < demo_latent.motion_score(rgb_fast)
    # ... and AdaCache + MoReg spends fewer computed steps on the static scene (AdaCache alone
    # computes 8/30 on every class of this model; docs/demo.md)
    assert steps_static < steps_fast <= STEPS
