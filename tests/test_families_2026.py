"""Families added to ComfyUI after 0.3.75, on tiny random-initialised real classes.

Each case runs where the host has the class (ComfyUI 0.33.0 has them all) and skips, naming
the class, where it does not (the pinned 0.3.75). As in test_families_video: a never-reusing
codebook is bit-identical to the unpatched model; an always-reusing one runs the block stack
(real block modules counted) exactly on the computed steps, and MoReg measures finite motion
on video tokens only.

The models are built from their ``supported_models`` config (``direct``), so the real
``model_base`` class, its conds and model sampling are ComfyUI's.
"""

from __future__ import annotations

import functools
import math

import comfy.model_management
import comfy.nested_tensor
import comfy.sample
import comfy.samplers
import pytest
import torch
from comfy_host import host_class
from comfyui_adacache.adacache import AdaCacheConfig, MoRegSettings
from comfyui_adacache.adacache.families import Family, family_for
from comfyui_adacache.nodes.patch import apply_adacache
from test_families_video import ALWAYS_REUSE, NEVER_REUSE, STEPS, cond_pair, direct, g, run
from wan_fixtures import BlockCounter, conds, load_wan, sample, summary_of

SM = "comfy.supported_models"


def wan_config(model_type: str, **kw) -> dict:
    config = dict(image_model="wan2.1", model_type=model_type, dim=128, ffn_dim=256,
                  num_heads=1, num_layers=2, in_dim=16, out_dim=16, text_dim=4096)
    return {**config, **kw}


def needs(module: str, name: str):
    return host_class(module, name)


# -- the cases: () -> (model, latent, positive, negative) ------------------------------------
def causal_wan():
    config = needs(SM, "WAN21_CausalAR_T2V")
    model = direct(config, wan_config("t2v", causal_ar=True))
    return model, torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 4096)


def scail():
    config = needs(SM, "WAN21_SCAIL")
    model = direct(config, wan_config("scail", in_dim=20))
    pose = torch.randn(1, 16, 3, 4, 4, generator=g(7))  # half resolution: 12 tail tokens
    return model, torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 4096, pose_video_latent=pose)


def wan_animate2():
    config = needs(SM, "WAN_Animate2")
    model = direct(config, wan_config("animate2", in_dim=36))
    return model, torch.zeros(1, 16, 4, 8, 8), cond_pair(6, 4096)  # frame 0: reference slot


def wan_dancer():
    config = needs(SM, "WAN22_WanDancer")
    model = direct(config, wan_config("wandancer", in_dim=36))
    return model, torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 4096, fps=16)  # head_global


def cogvideox():
    config = needs(SM, "CogVideoX_T2V")
    model = direct(config, dict(
        image_model="cogvideox", num_attention_heads=2, attention_head_dim=64, in_channels=16,
        out_channels=16, text_embed_dim=64, num_layers=2, time_embed_dim=64, sample_width=16,
        sample_height=16, sample_frames=9, use_rotary_positional_embeddings=True,
    ))
    return model, torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 64)


def kandinsky5():
    config = needs(SM, "Kandinsky5")
    model = direct(config, dict(
        image_model="kandinsky5", in_visual_dim=16, out_visual_dim=16, in_text_dim=32,
        in_text_dim2=32, time_dim=64, model_dim=64, ff_dim=128, visual_embed_dim=132,
        num_text_blocks=1, num_visual_blocks=2, axes_dims=(8, 12, 12),
    ))
    return (model, torch.zeros(1, 16, 3, 8, 8),
            cond_pair(6, 32, pooled_output=torch.randn(1, 32, generator=g(3))))


def joyimage():
    config = needs(SM, "JoyImage")
    model = direct(config, dict(
        image_model="joyimage", in_channels=16, hidden_size=128, num_attention_heads=1,
        text_dim=64, num_layers=2,
    ))
    return model, torch.zeros(1, 16, 1, 8, 8), cond_pair(6, 64)


def seedvr2():
    config = needs(SM, "SeedVR2")
    model = direct(config, dict(
        image_model="seedvr2", norm_eps=1e-5, num_layers=2, mlp_type="normal",
        vid_in_channels=33, vid_out_channels=16, vid_dim=64, txt_in_dim=5120, heads=1,
        head_dim=64, mm_layers=1, expand_ratio=2, rope_dim=32, vid_out_norm="fusedrms",
    ))
    condition = torch.randn(1, 17, 3, 8, 8, generator=g(9))  # SeedVR2Conditioning's latent
    return model, torch.zeros(1, 16, 3, 8, 8), cond_pair(6, 5120, condition=condition)


def ltx2_audio_video():
    config = needs(SM, "LTXAV")
    model = direct(config, dict(
        image_model="ltxav", in_channels=128, audio_in_channels=128, cross_attention_dim=64,
        audio_cross_attention_dim=32, attention_head_dim=32, audio_attention_head_dim=16,
        num_attention_heads=2, audio_num_attention_heads=2, caption_channels=32, num_layers=2,
    ))
    video, audio = torch.zeros(1, 128, 3, 4, 4), torch.zeros(1, 8, 5, 16)
    latent = comfy.nested_tensor.NestedTensor([video, audio])  # what LTXVConcatAVLatent makes
    return model, latent, cond_pair(6, 64)  # text already through the connectors: 2 x 32


def minimax_h3():
    config = needs(SM, "MiniMaxH3")
    model = direct(config, dict(  # rope: 3 axes x 8 frequencies x 2 = head dim 48
        image_model="minimax_h3", hidden_size=96, num_layers=2, token_refiner_num_layers=1,
        num_attention_heads=2, attention_head_dim=48, ffn_hidden_size=128, latents_dim=24,
        audio_latents_dim=32, text_dim=32, timestep_input_dim=64, time_embed_hidden_size=96,
        time_embed_dim=64, rope_inv_freq_len=8,
    ))
    video, audio = torch.zeros(1, 24, 3, 8, 8), torch.zeros(1, 32, 2, 10)  # audio: 2 channels
    return model, comfy.nested_tensor.NestedTensor([video, audio]), cond_pair(6, 32)


def anima():
    config = needs(SM, "Anima")
    model = direct(config, dict(  # MiniTrainDIT options as Cosmos predict2; LLM adapter 1024
        image_model="anima", max_img_h=240, max_img_w=240, max_frames=128, in_channels=16,
        out_channels=16, patch_spatial=2, patch_temporal=1, concat_padding_mask=True,
        model_channels=128, num_blocks=2, num_heads=2, crossattn_emb_channels=1024,
        pos_emb_cls="rope3d", pos_emb_learnable=True, pos_emb_interpolation="crop",
        use_adaln_lora=True, adaln_lora_dim=64, extra_per_block_abs_pos_emb=False,
        rope_h_extrapolation_ratio=4.0, rope_w_extrapolation_ratio=4.0,
        rope_t_extrapolation_ratio=1.0, rope_enable_fps_modulation=False,
    ))
    return model, torch.zeros(1, 16, 1, 8, 8), cond_pair(6, 1024)


CASES = {  # name: (build, block lists counted, family, mode)
    "causal_wan": (causal_wan, ("blocks",), "Wan causal (AR)", "block stack"),
    "scail": (scail, ("blocks",), "Wan SCAIL", "block stack"),
    # its blocks run forward_gen (and forward_pose with pose latents, none here), not forward:
    # count their cross-attention
    "wan_animate2": (wan_animate2, ("blocks/cross_attn",), "Wan Animate 2", "block stack"),
    "wan_dancer": (wan_dancer, ("blocks",), "WanDancer", "block stack"),
    "cogvideox": (cogvideox, ("blocks",), "CogVideoX", "whole model"),
    "kandinsky5": (kandinsky5, ("visual_transformer_blocks",), "Kandinsky 5", None),
    "seedvr2": (seedvr2, ("blocks",), "SeedVR2", "block stack"),
    "ltx2_audio_video": (ltx2_audio_video, ("transformer_blocks",), "LTX-2 (audio+video)",
                         "block stack"),
    "minimax_h3": (minimax_h3, ("blocks",), "MiniMax H3", "block stack"),
    "anima": (anima, ("blocks",), "Anima", "whole model"),
    "joyimage": (joyimage, ("double_blocks",), "JoyImage", "block stack"),
}


def parts(x) -> list[torch.Tensor]:
    """The tensors of a latent (a NestedTensor holds LTX-2's video and audio)."""
    return list(x.unbind()) if isinstance(x, comfy.nested_tensor.NestedTensor) else [x]


def shapes(x):
    return [tuple(t.shape) for t in parts(x)]


def finite(x) -> bool:
    return all(torch.isfinite(t).all() for t in parts(x))


def equal(a, b) -> bool:
    pairs = zip(parts(a), parts(b), strict=True)
    return shapes(a) == shapes(b) and all(torch.equal(p, q) for p, q in pairs)


class SubmoduleCounter(BlockCounter):
    """Counts runs of one submodule (``"blocks/cross_attn"``) of every block."""

    def __init__(self, diffusion_model, spec: str):
        stack, sub = spec.split("/")
        blocks = [getattr(b, sub) for b in getattr(diffusion_model, stack)]
        self.n_blocks, self.calls = len(blocks), 0
        self.handles = [b.register_forward_pre_hook(self._hook) for b in blocks]


@functools.cache
def case(name):
    build = CASES[name][0]
    model, lat, (positive, negative) = build()
    return model, lat, positive, negative


@pytest.mark.parametrize("name", list(CASES))
def test_recent_family(name):
    _, stacks, family_name, mode = CASES[name]
    model, lat, positive, negative = case(name)
    dm = model.model.diffusion_model
    family = family_for(dm)
    assert family.name == family_name
    if mode is not None:
        assert family.support == mode

    vanilla = run(model, lat, positive, negative)
    assert shapes(vanilla) == shapes(lat) and finite(vanilla)

    never = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=NEVER_REUSE))
    assert equal(run(never, lat, positive, negative), vanilla)
    s = summary_of(never)
    assert s["reused_steps"] == 0 and s["computed_steps"] == STEPS

    moreg = MoRegSettings(window_start=0.0, window_end=1.0)
    fast = apply_adacache(
        model, AdaCacheConfig(preset="custom", codebook=ALWAYS_REUSE, moreg=moreg)
    )
    nested = "/" in stacks[0]
    counter = SubmoduleCounter(dm, stacks[0]) if nested else BlockCounter(dm, stacks)
    try:
        out = run(fast, lat, positive, negative)
    finally:
        counter.close()
    s = summary_of(fast)
    assert s["family"] == family_name and s["mode"] == family.support
    assert s["pattern"] == "CC...C..CC"
    if family.mode == "blocks":  # whole mode: the blocks run inside the skipped forward
        first_block_runs = s["reused_calls"] if family.reuse_runs_first_block else 0
        assert counter.calls == counter.n_blocks * s["stack_runs"] + first_block_runs
    calls_per_step = s["stack_runs"] // s["computed_steps"]  # 1 with CFG batched
    assert s["stack_runs"] == calls_per_step * s["computed_steps"] > 0
    assert s["reused_calls"] == calls_per_step * s["reused_steps"] > 0
    assert shapes(out) == shapes(vanilla) and out.dtype == vanilla.dtype
    # every part (LTX-2: video and audio) comes from the reused residuals on cached steps
    pairs = zip(parts(out), parts(vanilla), strict=True)
    assert finite(out) and not any(torch.equal(a, b) for a, b in pairs)

    measured = [r for r in s["trace"] if r["distance"] is not None]
    assert measured and all(math.isfinite(r["distance"]) for r in measured)
    if family.is_video:
        assert all(r["motion"] is not None for r in measured), "MoReg found no frames"
        assert all(math.isfinite(r["motion"]) for r in measured)
    comfy.model_management.soft_empty_cache()


def test_wan_in_context_reference_tokens_are_not_video_frames(monkeypatch):
    """Bernini in-context references: WanModel appends their tokens after the video tokens;
    MoReg must see only the video frames (the cond's latent: 1 frame of 8 x 8 tokens)."""
    host_class("comfy_extras.nodes_bernini", "BerniniConditioning")
    seen = []
    frames = Family.frames

    def spy(self, hidden, latent_shape, img_tokens=None, tail_tokens=0):
        out = frames(self, hidden, latent_shape, img_tokens, tail_tokens)
        seen.append((tail_tokens, None if out is None else tuple(out.shape)))
        return out

    monkeypatch.setattr(Family, "frames", spy)
    reference = torch.randn(1, 16, 1, 16, 16, generator=g(11))
    positive, negative = conds(context_latents=[reference])
    moreg = MoRegSettings(window_start=0.0, window_end=1.0)
    model = apply_adacache(load_wan("t2v", layers=2), AdaCacheConfig(preset="fast", moreg=moreg))
    sample(model, steps=8, positive=positive, negative=negative)
    assert seen and all(entry == (64, (1, 5, 64, 128)) for entry in seen), seen


def test_causal_wan_frame_by_frame_calls_run_unpatched():
    """The ar_video sampler (SamplerARVideo) drives CausalWanModel through its KV-cache loop
    (transformer_options["ar_state"]), which bypasses block replacement: those calls run
    exactly as without AdaCache. CFG 1: its KV caches hold one batch (distilled models)."""
    model, lat, positive, negative = case("causal_wan")

    def ar_video(m):
        sampler = comfy.samplers.ksampler("ar_video", {"num_frame_per_block": 1})
        sigmas = comfy.samplers.calculate_sigmas(m.get_model_object("model_sampling"), "simple", 4)
        noise = comfy.sample.prepare_noise(lat, 42)
        return comfy.sample.sample_custom(m, noise, 1.0, sampler, sigmas, positive, negative, lat,
                                          seed=42, disable_pbar=True)

    vanilla = ar_video(model)
    fast = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=ALWAYS_REUSE))
    out = ar_video(fast)
    s = summary_of(fast, out)
    assert s["passthrough_calls"] > 0 and s["reused_calls"] == 0 and s["stack_runs"] == 0
    assert torch.equal(out, vanilla)
