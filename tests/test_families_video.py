"""Video DiT families on tiny random-initialised instances of the real ComfyUI classes.

Per family: a never-reusing codebook is bit-identical to the unpatched model; with an
always-reusing codebook the block stack runs exactly on the computed steps (real block-module
calls counted), the output keeps its shape and dtype, and MoReg measures a finite motion.

Most checkpoints go through ``comfy.sd.load_diffusion_model`` (what "Load Diffusion Model"
does) so model detection picks the model_base class. Mochi and Cosmos 1 are built directly from
their supported_models config (see ``direct``): their detection hard-codes the full-size
shapes (Mochi: 48 layers of width 3072; Cosmos 1: 28 or 36 blocks with 32/40 heads).
"""

from __future__ import annotations

import functools
import math

import comfy.ldm.cosmos.model as cosmos1
import comfy.ldm.cosmos.predict2 as predict2
import comfy.ldm.hunyuan_video.model as hunyuan
import comfy.ldm.lightricks.model as ltxv
import comfy.ldm.wan.model as wan
import comfy.ldm.wan.model_animate as animate
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.sd
import comfy.supported_models as sm
import pytest
import torch
from comfy_host import with_host_fields
from comfyui_adacache.adacache import AdaCacheConfig, Codebook, MoRegSettings
from comfyui_adacache.adacache.families import family_for
from comfyui_adacache.nodes.patch import apply_adacache
from safetensors.torch import save_file
from wan_fixtures import TMP, BlockCounter, random_state_dict, sample, summary_of

NEVER_REUSE = Codebook((1.0,), (1,))
ALWAYS_REUSE = Codebook((1.0,), (4,))  # every distance -> next compute 4 steps later
OPS = comfy.ops.disable_weight_init
STEPS = 10


def g(seed):
    return torch.Generator().manual_seed(seed)


def saved(name: str, module: torch.nn.Module, seed: int = 0):
    path = TMP / f"{name}.safetensors"
    save_file(random_state_dict(module, seed), str(path))
    return comfy.sd.load_diffusion_model(str(path))


def direct(config_cls, unet_config: dict, seed: int = 0):
    """The model_base class a supported_models config builds, with random weights."""
    config = config_cls(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    model.load_model_weights(random_state_dict(model.diffusion_model, seed), "")
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def cond_pair(length: int, dim: int, **extra):
    pos = torch.randn(1, length, dim, generator=g(1))
    neg = torch.randn(1, length, dim, generator=g(2)) * 0.5
    return [[pos, dict(extra)]], [[neg, dict(extra)]]


def hunyuan_fields(config: dict, meanflow_sum: bool = False) -> dict:
    """HunyuanVideo kwargs plus ``meanflow_sum`` where the host's params have it (newer hosts;
    detection sets it True exactly when there is a vision_in projection, i.e. 1.5)."""
    return with_host_fields(hunyuan.HunyuanVideoParams, config, meanflow_sum=meanflow_sum)


# -- the families: (loader, latent, conds, block module lists) -------------------------------
def hunyuan_video():
    m = hunyuan.HunyuanVideo(**hunyuan_fields(dict(
        in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=32, hidden_size=128,
        mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56],
        theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True, byt5=False,
        meanflow=False, use_cond_type_embedding=False, vision_in_dim=None, operations=OPS,
    )))
    pooled = torch.randn(1, 768, generator=g(3))
    return (
        saved("hunyuan_video", m),
        torch.zeros(1, 16, 3, 8, 8),
        cond_pair(6, 32, pooled_output=pooled, guidance=6.0),
    )


def hunyuan_video_15():
    m = hunyuan.HunyuanVideo(**hunyuan_fields(dict(
        in_channels=65, out_channels=32, vec_in_dim=None, context_in_dim=32, hidden_size=128,
        mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56],
        theta=256, patch_size=[1, 1, 1], qkv_bias=True, guidance_embed=False, byt5=False,
        meanflow=False, use_cond_type_embedding=True, vision_in_dim=1152, operations=OPS,
    ), meanflow_sum=True))
    # HunyuanVideo15.encode_adm still reads pooled_output (unused without vector_in)
    return (
        saved("hunyuan_video_15", m),
        torch.zeros(1, 32, 3, 4, 4),
        cond_pair(6, 32, pooled_output=torch.zeros(1, 768)),
    )


def ltx_video():
    # detection: heads = 32, head dim = attn2.to_k rows // 32, cross_attention_dim = its cols
    m = ltxv.LTXVModel(cross_attention_dim=64, attention_head_dim=2, num_attention_heads=32,
                       num_layers=2, operations=OPS)
    mask = torch.ones(1, 6, dtype=torch.long)
    return (
        saved("ltxv", m),
        torch.zeros(1, 128, 3, 4, 4),
        cond_pair(6, 4096, frame_rate=25, attention_mask=mask),
    )


def mochi():
    unet_config = dict(
        image_model="mochi_preview", depth=2,  # the MLP width is asserted: 64 * 192 == 1536 * 8
        patch_size=2, num_heads=2, hidden_size_x=64,
        hidden_size_y=32, mlp_ratio_x=192.0, mlp_ratio_y=4.0, learn_sigma=False, in_channels=12,
        qk_norm=True, qkv_bias=False, out_bias=True, attn_drop=0.0, patch_embed_bias=True,
        posenc_preserve_area=True, timestep_mlp_bias=True, attend_to_padding=False,
        timestep_scale=1000.0, use_t5=True, t5_feat_dim=64, t5_token_length=8, rope_theta=1e4,
    )
    mask = torch.ones(1, 6, dtype=torch.long)
    return (
        direct(sm.GenmoMochi, unet_config),
        torch.zeros(1, 12, 3, 4, 4),
        cond_pair(6, 64, attention_mask=mask),
    )


def cosmos_1():
    unet_config = dict(
        image_model="cosmos", max_img_h=32, max_img_w=32, max_frames=16, in_channels=16,
        out_channels=16, patch_spatial=2, patch_temporal=1, model_channels=128, num_blocks=2,
        num_heads=2, crossattn_emb_channels=64, block_config="FA-CA-MLP",
        concat_padding_mask=True, pos_emb_cls="rope3d", pos_emb_learnable=False,
        pos_emb_interpolation="crop", block_x_format="THWBD", affline_emb_norm=True,
        use_adaln_lora=True, adaln_lora_dim=32, extra_per_block_abs_pos_emb=True,
        extra_per_block_abs_pos_emb_type="learnable",
    )
    return direct(sm.CosmosT2V, unet_config), torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 64)


def cosmos_predict2():
    # detection: width from x_embedder; blocks/heads default (10, 16) unless 2048/5120 wide;
    # rope3d needs a head dim of at least 16
    m = predict2.MiniTrainDIT(
        max_img_h=240, max_img_w=240, max_frames=128, in_channels=16, out_channels=16,
        patch_spatial=2, patch_temporal=1, concat_padding_mask=True, model_channels=256,
        num_blocks=10, num_heads=16, crossattn_emb_channels=1024, pos_emb_cls="rope3d",
        pos_emb_learnable=True, pos_emb_interpolation="crop", min_fps=1, max_fps=30,
        use_adaln_lora=True, adaln_lora_dim=256, extra_per_block_abs_pos_emb=False,
        rope_h_extrapolation_ratio=4.0, rope_w_extrapolation_ratio=4.0,
        rope_t_extrapolation_ratio=1.0, rope_enable_fps_modulation=False, operations=OPS,
    )
    return saved("cosmos_predict2", m), torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 1024)


def wan_common(num_layers=2, **kw):
    return dict(dim=128, ffn_dim=256, num_heads=1, num_layers=num_layers, operations=OPS, **kw)


def wan22_5b():
    m = wan.WanModel(in_dim=48, out_dim=48, **wan_common())
    return saved("wan22_5b", m), torch.zeros(1, 48, 3, 8, 8), cond_pair(6, 4096)


def wan_camera():
    m = wan.CameraWanModel(model_type="camera_2.2", in_dim=36, **wan_common())
    return saved("wan_camera", m), torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 4096)


def wan_s2v():
    m = wan.WanModel_S2V(**wan_common())
    audio = torch.randn(1, 25, 1024, 3 * 4, generator=g(4))  # [B, layers, dim, 4 per frame]
    ref = torch.randn(1, 16, 1, 8, 8, generator=g(5))  # appended after the video tokens
    return (
        saved("wan_s2v", m),
        torch.zeros(1, 16, 3, 8, 8),
        cond_pair(6, 4096, audio_embed=audio, reference_latents=[ref]),
    )


def wan_humo():
    m = wan.HumoWanModel(**wan_common())
    return saved("wan_humo", m), torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 4096)


def wan_animate():
    # 5 layers: one face-adapter block (num_layers // 5), which detection keys on
    m = animate.AnimateWanModel(**wan_common(num_layers=5))
    return saved("wan_animate", m), torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 4096)


CASES = {
    "hunyuan_video": (hunyuan_video, ("double_blocks", "single_blocks")),
    "hunyuan_video_15": (hunyuan_video_15, ("double_blocks", "single_blocks")),
    "ltx_video": (ltx_video, ("transformer_blocks",)),
    "mochi": (mochi, ("blocks",)),
    "cosmos_1": (cosmos_1, ("blocks",)),
    "cosmos_predict2": (cosmos_predict2, ("blocks",)),
    "wan22_5b": (wan22_5b, ("blocks",)),
    "wan_camera": (wan_camera, ("blocks",)),
    "wan_s2v": (wan_s2v, ("blocks",)),
    "wan_humo": (wan_humo, ("blocks",)),
    "wan_animate": (wan_animate, ("blocks",)),
}
EXPECTED = {
    "hunyuan_video": ("HunyuanVideo", hunyuan.HunyuanVideo, "HunyuanVideo"),
    "hunyuan_video_15": ("HunyuanVideo15", hunyuan.HunyuanVideo, "HunyuanVideo"),
    "ltx_video": ("LTXV", ltxv.LTXVModel, "LTX-Video"),
    "mochi": ("GenmoMochi", None, "Mochi"),
    "cosmos_1": ("CosmosVideo", cosmos1.GeneralDIT, "Cosmos"),
    "cosmos_predict2": ("CosmosPredict2", predict2.MiniTrainDIT, "Cosmos"),
    "wan22_5b": ("WAN22", wan.WanModel, "Wan"),
    "wan_camera": ("WAN21_Camera", wan.CameraWanModel, "Wan camera"),
    "wan_s2v": ("WAN22_S2V", wan.WanModel_S2V, "Wan S2V"),
    "wan_humo": ("WAN21_HuMo", wan.HumoWanModel, "Wan HuMo"),
    "wan_animate": ("WAN22_Animate", animate.AnimateWanModel, "Wan Animate"),
}


@functools.cache
def case(name):
    build, stacks = CASES[name]
    model, lat, (positive, negative) = build()
    return model, lat, positive, negative, stacks


def run(model, lat, positive, negative):
    return sample(model, steps=STEPS, cfg=3.0, lat=lat, positive=positive, negative=negative)


@pytest.mark.parametrize("name", list(CASES))
def test_video_family(name):
    model, lat, positive, negative, stacks = case(name)
    base_name, dm_class, family_name = EXPECTED[name]
    assert type(model.model).__name__ == base_name  # the model_base class detection picked
    dm = model.model.diffusion_model
    if dm_class is not None:
        assert type(dm) is dm_class
    family = family_for(dm)
    assert family.name == family_name

    vanilla = run(model, lat, positive, negative)
    assert vanilla.shape == lat.shape and torch.isfinite(vanilla).all()

    never = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=NEVER_REUSE))
    assert torch.equal(run(never, lat, positive, negative), vanilla)
    s = summary_of(never)
    assert s["reused_steps"] == 0 and s["computed_steps"] == STEPS

    moreg = MoRegSettings(window_start=0.0, window_end=1.0)
    fast = apply_adacache(
        model, AdaCacheConfig(preset="custom", codebook=ALWAYS_REUSE, moreg=moreg)
    )
    counter = BlockCounter(dm, stacks)
    try:
        out = run(fast, lat, positive, negative)
    finally:
        counter.close()
    s = summary_of(fast)
    assert s["family"] == family_name
    assert s["pattern"] == "CC...C..CC"
    assert counter.calls == counter.n_blocks * s["computed_steps"]  # one CFG-batched call/step
    assert s["stack_runs"] == s["computed_steps"] and s["reused_calls"] == s["reused_steps"] > 0
    assert out.shape == vanilla.shape and out.dtype == vanilla.dtype
    assert torch.isfinite(out).all() and not torch.equal(out, vanilla)

    measured = [r for r in s["trace"] if r["distance"] is not None]
    assert measured and all(math.isfinite(r["distance"]) for r in measured)
    assert all(r["motion"] is not None for r in measured), "MoReg found no frames"
    assert all(math.isfinite(r["motion"]) and math.isfinite(r["moreg_factor"]) for r in measured)
    assert s["moreg"] is True
    comfy.model_management.soft_empty_cache()
