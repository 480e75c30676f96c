"""AdaCache next to other patches ComfyUI users combine it with (real host nodes, tiny Wan)."""

from __future__ import annotations

import comfy.sd
import pytest
import torch
from comfy_api.torch_helpers import set_torch_compile_wrapper
from comfy_extras.nodes_model_advanced import ModelSamplingSD3
from comfy_extras.nodes_slg import SkipLayerGuidanceDiT, SkipLayerGuidanceDiTSimple
from comfyui_adacache.adacache import AdaCacheConfig
from comfyui_adacache.nodes.patch import apply_adacache
from wan_fixtures import (
    ALWAYS_REUSE,
    NEVER_REUSE,
    BlockCounter,
    load_wan,
    node_model,
    patched,
    sample,
    summary_of,
)


@pytest.fixture(scope="module")
def wan():
    return load_wan("t2v")


def tiny_lora(model, seed=7, rank=4):
    g = torch.Generator().manual_seed(seed)
    sd = model.model.diffusion_model.state_dict()
    lora = {}
    for i in range(len(model.model.diffusion_model.blocks)):
        for part in ("self_attn.q", "cross_attn.v", "ffn.0"):
            out_f, in_f = sd[f"blocks.{i}.{part}.weight"].shape
            prefix = f"diffusion_model.blocks.{i}.{part}"
            lora[f"{prefix}.lora_up.weight"] = torch.randn(out_f, rank, generator=g) * 0.2
            lora[f"{prefix}.lora_down.weight"] = torch.randn(rank, in_f, generator=g) * 0.2
    return lora


def test_lora_before_and_after_adacache(wan):
    lora = tiny_lora(wan)
    with_lora, _ = comfy.sd.load_lora_for_models(wan, None, lora, 1.0, 0)
    vanilla = sample(with_lora)
    assert not torch.equal(vanilla, sample(wan))  # the LoRA does something
    assert torch.equal(sample(patched(with_lora, NEVER_REUSE)), vanilla)
    lora_after, _ = comfy.sd.load_lora_for_models(patched(wan, NEVER_REUSE), None, lora, 1.0, 0)
    assert torch.equal(sample(lora_after), vanilla)
    cached = patched(with_lora)
    assert torch.isfinite(sample(cached)).all() and summary_of(cached)["reused_steps"] > 0


@pytest.mark.parametrize("order", ["slg_first", "adacache_first"])
def test_skip_layer_guidance_on_the_same_blocks(wan, order):
    def slg(m):
        return node_model(SkipLayerGuidanceDiT.execute(
            m, scale=3.0, start_percent=0.0, end_percent=1.0, double_layers="1, 2"))

    vanilla = sample(slg(wan))
    if order == "slg_first":
        never, fast = patched(slg(wan), NEVER_REUSE), patched(slg(wan))
    else:
        never, fast = slg(patched(wan, NEVER_REUSE)), slg(patched(wan))
    assert torch.equal(sample(never), vanilla)
    out = sample(fast)
    s = summary_of(fast, out)
    # SLG's extra pass (blocks 1, 2 skipped) runs as asked on every step and is never cached
    assert s["passthrough_calls"] == s["steps_reached"]
    assert s["reused_steps"] > 0 and torch.isfinite(out).all()
    # beside reused steps its guidance amplifies the reuse error: the node says so, with numbers
    assert any("SkipLayerGuidance" in w and "dB" in w for w in s["warnings"])


def test_skip_layer_guidance_simple_keeps_caching_the_cond_stream(wan):
    def slg(m):
        return node_model(SkipLayerGuidanceDiTSimple.execute(
            m, start_percent=0.0, end_percent=1.0, double_layers="1"))

    vanilla = sample(slg(wan))
    assert torch.equal(sample(patched(slg(wan), NEVER_REUSE)), vanilla)
    fast = patched(slg(wan))
    sample(fast)
    s = summary_of(fast)
    assert s["passthrough_calls"] == s["steps_reached"]  # the uncond pass, blocks skipped
    assert s["reused_steps"] > 0


def test_shift_override_is_read_with_object_patches(wan):
    shifted = ModelSamplingSD3().patch(wan, shift=3.0)[0]
    sampling = shifted.get_model_object("model_sampling")
    assert sampling is not wan.get_model_object("model_sampling")
    fast = apply_adacache(shifted, AdaCacheConfig(preset="fast", start_percent=0.3,
                                                  end_percent=0.9))
    sample(fast)
    high, low = summary_of(fast)["cache_sigma_range"]
    assert high == pytest.approx(float(sampling.percent_to_sigma(0.3)))
    assert low == pytest.approx(float(sampling.percent_to_sigma(0.9)))
    default = wan.get_model_object("model_sampling")
    assert high != pytest.approx(float(default.percent_to_sigma(0.3)))
    assert torch.equal(sample(patched(shifted, NEVER_REUSE)), sample(shifted))


@pytest.mark.parametrize("scope", ["whole_model", "per_block"])
def test_torch_compile(wan, scope):
    """TorchCompileModel's wrapper (eager backend here: the same dynamo path, no C++ build)."""
    n = len(wan.model.diffusion_model.blocks)
    keys = ["diffusion_model"] if scope == "whole_model" else [
        f"diffusion_model.blocks.{i}" for i in range(n)]
    reference = sample(patched(wan))
    compiled = patched(wan)
    set_torch_compile_wrapper(compiled, backend="eager", keys=keys)
    counter = BlockCounter(wan.model.diffusion_model)
    try:
        out = sample(compiled)
    finally:
        counter.close()
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    s = summary_of(compiled)
    assert s["reused_steps"] > 0
    if scope == "per_block":  # compiled blocks still skipped on cached steps
        assert counter.stack_runs == s["computed_steps"]


def test_two_adacache_nodes_stacked_the_later_one_wins(wan):
    stacked = patched(apply_adacache(wan, AdaCacheConfig(preset="slow")), ALWAYS_REUSE)
    single = patched(wan, ALWAYS_REUSE)
    counter = BlockCounter(wan.model.diffusion_model)
    try:
        out = sample(stacked)
    finally:
        counter.close()
    assert torch.equal(out, sample(single))
    assert summary_of(stacked)["pattern"] == summary_of(single)["pattern"]
    assert counter.stack_runs == summary_of(stacked)["computed_steps"]  # blocks run once


def test_few_step_runs_warn(wan, caplog):
    fast = apply_adacache(wan, AdaCacheConfig(preset="fast"))
    with caplog.at_level("INFO", logger="AdaCache"):
        sample(fast, steps=4)
    s = summary_of(fast)
    assert s["reused_steps"] == 0
    assert any("few-step" in w for w in s["warnings"])
    assert "few-step" in caplog.text


def test_a_block_replacement_registered_before_is_composed_not_overwritten(wan):
    calls = []

    def scale_block(args, extra):  # another pack's replacement on block 1
        calls.append(1)
        out = extra["original_block"](args)
        return {**out, "img": out["img"] * 0.9}

    other = wan.clone()
    other.set_model_patch_replace(scale_block, "dit", "double_block", 1)
    vanilla = sample(other)
    n_vanilla = len(calls)
    calls.clear()
    assert torch.equal(sample(patched(other, NEVER_REUSE)), vanilla)
    assert len(calls) == n_vanilla  # it still ran on every evaluation
    calls.clear()
    fast = patched(other)
    sample(fast)
    assert len(calls) == summary_of(fast)["stack_runs"]  # and only when the stack runs
