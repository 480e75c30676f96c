"""Image families that ComfyUI 0.33.0 ships and 0.3.75 lacks (HunyuanDiT is in both), on tiny
random-initialised instances of the real classes, built from their ``supported_models``
config (``direct``: the real ``model_base`` class, conds and model sampling) and sampled by
ComfyUI's euler sampler with CFG. A case skips, naming the class, on a host without it.

Per family: a never-reusing codebook is bit-identical to the unpatched model; an always-reusing
one runs the block stack (real block modules counted) exactly on the computed steps; the
``fast`` preset reuses steps and stays close to the uncached output.
"""

from __future__ import annotations

import functools

import comfy.model_management
import pytest
import torch
from comfy_host import host_class
from comfyui_adacache.adacache import AdaCacheConfig
from comfyui_adacache.adacache.families import family_for
from comfyui_adacache.nodes.patch import apply_adacache
from test_families_video import ALWAYS_REUSE, NEVER_REUSE, cond_pair, direct, g
from wan_fixtures import BlockCounter, sample, summary_of

SM = "comfy.supported_models"
STEPS = 10
FAST_STEPS = 30  # the fast preset at a step count a user would run


def config(name: str):
    return host_class(SM, name)


def build(name: str, unet_config: dict):
    """``direct`` with the sizes set after the config's own extras (Ideogram 4 fixes its
    production sizes in unet_extra_config)."""
    cls = config(name)

    class Tiny(cls):
        unet_extra_config = {**cls.unet_extra_config, **unet_config}

    return direct(Tiny, unet_config)


# -- the cases: () -> (model, latent, (positive, negative)) ------------------------------------
def hunyuan_dit():
    model = build("HunyuanDiT", dict(
        image_model="hydit", input_size=(32, 32), patch_size=2, in_channels=4, hidden_size=64,
        depth=4, num_heads=2, text_states_dim=32, text_states_dim_t5=32, text_len=8,
        text_len_t5=8,
    ))
    mask = torch.ones(1, 8, dtype=torch.long)
    t5 = torch.randn(1, 8, 32, generator=g(3))
    return model, torch.zeros(1, 4, 16, 16), cond_pair(
        8, 32, attention_mask=mask, conditioning_mt5xl=t5, attention_mask_mt5xl=mask)


def lens():
    model = build("Lens", dict(
        image_model="lens", in_channels=128, out_channels=32, num_layers=2,
        attention_head_dim=32, num_attention_heads=2, enc_hidden_dim=32,
        axes_dims_rope=(8, 12, 12), selected_layer_index=(0, 1),
    ))
    return model, torch.zeros(1, 128, 8, 8), cond_pair(6, 64)  # 2 text layers x 32


def mage_flow():
    model = build("MageFlow", dict(
        image_model="mage_flow", in_channels=128, out_channels=128, num_layers=2,
        attention_head_dim=32, num_attention_heads=2, joint_attention_dim=32,
        axes_dims_rope=(8, 12, 12),
    ))
    return model, torch.zeros(1, 128, 8, 8), cond_pair(6, 32)


def hidream_o1():
    model = build("HiDreamO1", dict(
        image_model="hidream_o1",
        text_config_overrides=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, rope_dims=[6, 5, 5],
        ),
        vision_config_overrides=dict(hidden_size=32, num_heads=2, intermediate_size=64, depth=1),
    ))
    # what its pass-through text encoder gives: token ids as the model's input
    ids = torch.tensor([[151644, 872, 198, 9707, 1879, 151645, 198, 151644, 77091, 198,
                         151672, 151673]])
    negative_ids = torch.cat([ids[:, :3], ids[:, 5:]], dim=1)
    positive = [[ids.unsqueeze(-1).float(), {"text_input_ids": ids}]]
    negative = [[negative_ids.unsqueeze(-1).float(), {"text_input_ids": negative_ids}]]
    return model, torch.zeros(1, 3, 64, 64), (positive, negative)  # 2 x 2 pixel patches


PIXELDIT = dict(
    in_channels=3, num_groups=2, hidden_size=64, pixel_hidden_size=8, pixel_attn_hidden_size=32,
    pixel_num_groups=2, patch_depth=2, pixel_depth=1, patch_size=4, txt_embed_dim=32,
    txt_max_length=16,
)


def pixeldit():
    model = build("PixelDiTT2I", dict(PIXELDIT, image_model="pixeldit"))
    return model, torch.zeros(1, 3, 16, 16), cond_pair(6, 32)


def pid():
    """PiD (PidNet, a PixDiT_T2I subclass): upscaling from a low-quality latent, one latent
    pixel per 4 x 4 pixel patch here."""
    model = build("PiD", dict(
        PIXELDIT, image_model="pid", lq_latent_channels=16, lq_hidden_dim=32,
        lq_num_res_blocks=1, sr_scale=1, latent_spatial_down_factor=4,
    ))
    lq = torch.randn(1, 16, 4, 4, generator=g(5))
    return model, torch.zeros(1, 3, 16, 16), cond_pair(
        6, 32, lq_latent=lq, degrade_sigma=torch.tensor([0.1]))


def omnigen2(name="Omnigen2", image_model="omnigen2", **kw):
    kw = kw or dict(text_feat_dim=32)
    model = build(name, dict(
        image_model=image_model, patch_size=2, in_channels=16, hidden_size=64, num_layers=2,
        num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16,
        axes_dim_rope=(8, 12, 12), axes_lens=(64, 64, 64), **kw,
    ))
    mask = torch.ones(1, 6, dtype=torch.long)
    return model, torch.zeros(1, 16, 8, 8), cond_pair(6, 32, attention_mask=mask)


def boogu():
    return omnigen2("Boogu", "boogu", num_double_stream_layers=1, instruction_feat_dim=32)


def ideogram4():
    model = build("Ideogram4", dict(
        image_model="ideogram4", in_channels=128, num_layers=2, num_attention_heads=2,
        attention_head_dim=32, intermediate_size=128, adaln_dim=32, llm_features_dim=32,
        mrope_section=(6, 5, 5),
    ))
    return model, torch.zeros(1, 128, 4, 4), cond_pair(6, 32)


def krea2():
    model = build("Krea2", dict(
        image_model="krea2", features=64, tdim=32, txtdim=32, heads=2, kvheads=2, layers=2,
        patch=2, channels=16, txtlayers=2, txtheads=2, txtkvheads=2,
    ))
    return model, torch.zeros(1, 16, 1, 8, 8), cond_pair(6, 64)  # 2 text layers x 32


def ernie_image():
    model = build("ErnieImage", dict(
        image_model="ernie", hidden_size=64, num_attention_heads=2, num_layers=2,
        ffn_hidden_size=128, in_channels=128, out_channels=128, text_in_dim=32,
        rope_axes_dim=(8, 12, 12),
    ))
    return model, torch.zeros(1, 128, 8, 8), cond_pair(6, 32)


BLOCKS, WHOLE = "block stack", "whole model"
CASES = {  # name: (build, family, mode, block lists counted: run on computed steps only)
    "hunyuan_dit": (hunyuan_dit, "HunyuanDiT", BLOCKS, ("blocks",)),
    "lens": (lens, "Lens", BLOCKS, ("transformer_blocks",)),
    "mage_flow": (mage_flow, "Mage-Flow", BLOCKS, ("transformer_blocks",)),
    "hidream_o1": (hidream_o1, "HiDream-O1", WHOLE, ("language_model.layers",)),  # see the end
    "pixeldit": (pixeldit, "PixelDiT", WHOLE, ("patch_blocks", "pixel_blocks")),
    "pid": (pid, "PixelDiT", WHOLE, ("patch_blocks", "pixel_blocks")),
    "omnigen2": (omnigen2, "OmniGen2", WHOLE, ("layers",)),
    "boogu": (boogu, "Boogu", WHOLE, ("double_stream_layers", "single_stream_layers")),
    "ideogram4": (ideogram4, "Ideogram 4", WHOLE, ("layers",)),
    "krea2": (krea2, "Krea 2", WHOLE, ("blocks",)),
    "ernie_image": (ernie_image, "ERNIE-Image", WHOLE, ("layers",)),
}


@functools.cache
def case(name):
    model, lat, (positive, negative) = CASES[name][0]()
    return model, lat, positive, negative


@functools.cache
def vanilla(name, steps=STEPS):
    model, lat, positive, negative = case(name)
    return sample(model, steps=steps, cfg=3.0, lat=lat, positive=positive, negative=negative)


def run(model, name, steps=STEPS):
    _, lat, positive, negative = case(name)
    return sample(model, steps=steps, cfg=3.0, lat=lat, positive=positive, negative=negative)


def counter(diffusion_model, paths) -> BlockCounter:
    """Counts the block executions of the lists at ``paths`` (``language_model.layers``)."""
    holder = torch.nn.Module()
    for i, path in enumerate(paths):
        module = diffusion_model
        for part in path.split("."):
            module = getattr(module, part)
        holder.add_module(f"stack{i}", module)
    return BlockCounter(holder, tuple(f"stack{i}" for i in range(len(paths))))


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    vanilla.cache_clear()
    case.cache_clear()
    comfy.model_management.soft_empty_cache()


@pytest.mark.parametrize("name", list(CASES))
def test_family_and_mode(name):
    _, family_name, mode, _ = CASES[name]
    family = family_for(case(name)[0].model.diffusion_model)
    assert (family.name, family.support, family.is_video) == (family_name, mode, False)


@pytest.mark.parametrize("name", list(CASES))
def test_never_reusing_codebook_is_bit_identical_to_vanilla(name):
    model = case(name)[0]
    reference = vanilla(name)
    assert reference.shape == case(name)[1].shape and torch.isfinite(reference).all()
    never = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=NEVER_REUSE))
    out = run(never, name)
    assert out.dtype == reference.dtype and torch.equal(out, reference)
    s = summary_of(never, out)
    assert s["reused_steps"] == 0 and s["computed_steps"] == STEPS
    assert s["family"] == CASES[name][1]


@pytest.mark.parametrize("name", list(CASES))
def test_cached_steps_skip_the_stack(name):
    model = case(name)[0]
    cached = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=ALWAYS_REUSE))
    blocks = counter(model.model.diffusion_model, CASES[name][3])
    try:
        out = run(cached, name)
    finally:
        blocks.close()
    s = summary_of(cached)
    assert s["pattern"] == "CC...C..CC"
    # cond and uncond run batched (one call per step) unless their conds differ in length
    # (HiDream-O1's token ids): then two calls per step
    calls_per_step = s["stack_runs"] // s["computed_steps"]
    assert s["computed_steps"] == 5 and s["stack_runs"] == 5 * calls_per_step
    assert s["reused_calls"] == 5 * calls_per_step
    assert blocks.calls == blocks.n_blocks * s["stack_runs"]  # real block executions
    reference = vanilla(name)
    assert out.shape == reference.shape and out.dtype == reference.dtype
    assert torch.isfinite(out).all() and not torch.equal(out, reference)


def psnr(out: torch.Tensor, reference: torch.Tensor) -> float:
    peak = reference.abs().max()
    return float(10 * torch.log10(peak**2 / ((out - reference) ** 2).mean()))


@pytest.mark.parametrize("name", list(CASES))
def test_fast_preset_reuses_steps_and_stays_close(name):
    model = case(name)[0]
    fast = apply_adacache(model, AdaCacheConfig(preset="fast"))
    out = run(fast, name, FAST_STEPS)
    s = summary_of(fast, out)
    quality = psnr(out, vanilla(name, FAST_STEPS))
    print(f"{name}: {s['computed_steps']}/{FAST_STEPS} computed, {quality:.1f} dB")
    assert s["reused_steps"] > 0
    assert quality > 25.0, f"{quality:.1f} dB against uncached"


def test_hidream_o1_output_changes_with_any_block_replacement():
    """Why HiDream-O1 runs whole-model although its decoder layers go through
    patches_replace["dit"]: with any block replaced, even by a pass-through, the model turns off
    its text-prefix K/V cache, and its output is no longer the unpatched one."""
    model, lat, positive, negative = case("hidream_o1")
    passthrough = model.clone()
    for i in range(len(model.model.diffusion_model.language_model.layers)):
        passthrough.set_model_patch_replace(
            lambda args, extra: extra["original_block"](args), "dit", "double_block", i)
    out = run(passthrough, "hidream_o1")
    assert not torch.equal(out, vanilla("hidream_o1"))
    assert torch.allclose(out, vanilla("hidream_o1"), atol=1e-5)  # the same model otherwise
