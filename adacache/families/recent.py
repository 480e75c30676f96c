"""Families added to ComfyUI after 0.3.75 (read from ComfyUI 0.33.0's model code, 2026).

On a host without a class, its family simply never matches. Wan subclasses that keep Wan's
block loop are accepted by ``family_for`` through the MRO; the entries here exist where the
layout differs (extra tokens, output modules, modules between blocks, loops that bypass block
replacement).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import replace

from . import WHOLE, Family, register
from .image import QWEN_IMAGE
from .video import COSMOS, LTXV
from .wan import WAN

WAN_CAUSAL = replace(
    WAN,
    name="Wan causal (AR)",
    class_names=("CausalWanModel",),
    bypass_options=("ar_state",),
    note="Self-Forcing style CausalWanModel: ordinary (bidirectional) calls are Wan's; "
    "frame-by-frame calls with transformer_options['ar_state'] use the model's KV-cache loop, "
    "which bypasses block replacement, and run unpatched",
)

WAN_SCAIL = replace(
    WAN,
    name="Wan SCAIL",
    class_names=("SCAILWanModel",),  # SCAIL-2 (SCAIL2WanModel) is a subclass
    silenced_modules=(),
    tail_latents=("pose_latents",),
    note="tokens are [reference frames | video | pose]: reference latents are prepended in "
    "time (cut by the model), pose tokens appended; MoReg sees only the video tokens",
)

WAN_ANIMATE2 = replace(
    WAN,
    name="Wan Animate 2",
    class_names=("WanAnimate2Model",),
    silenced_modules=(),
    lead_frames=1,
    note="latent frame 0 is the reference-image slot (not video for MoReg); the pose branch "
    "runs on every evaluation (its keys/values feed each block), so a reused step still pays "
    "for it",
)

WAN_DANCER = replace(
    WAN,
    name="WanDancer",
    class_names=("WanDancerModel",),
    output_module=("head", "head_global"),  # head_global when fps != 30
    # music_injector(x, i, ...) runs after every block and returns the updated x
    silenced_modules=(("music_injector", "input"),),
    note="music injection between blocks is part of the stack residual and skipped on cached "
    "steps; the output head is head or head_global (fps != 30)",
)

COGVIDEOX = Family(
    name="CogVideoX",
    class_names=("CogVideoXTransformer3DModel",),
    mode=WHOLE,
    note="CogVideoX 2B/5B and 1.5: no block replacement in its block loop: whole-model mode "
    "(the paper's own CogVideoX-2B result is with block caching)",
)


def kandinsky5_block_replace_works(diffusion_model) -> bool:
    """Whether Kandinsky 5's block loop can run a block replacement.

    In ComfyUI 0.33 the ``original_block`` its loop hands over calls the block with ``x=``
    (the block's argument is ``visual_embed``) and returns a bare tensor that the loop then
    indexes with ``["x"]``, so any replacement fails, with or without this pack. Read from the
    loop's source: ``block_wrap`` must return a dict and pass only keywords the block takes.
    Unreadable source counts as broken (whole-model mode is always safe).
    """
    try:
        source = inspect.getsource(type(diffusion_model).forward_orig)
        block_params = inspect.signature(diffusion_model.visual_transformer_blocks[0].forward)
    except (OSError, TypeError, ValueError, AttributeError, IndexError):
        return False
    wrap = re.search(r"def block_wrap\([^)]*\):(.*?)blocks_replace\[", source, re.S)
    if wrap is None or re.search(r"return\s*\{|out\[\s*[\"']x[\"']\s*\]\s*=", wrap[1]) is None:
        return False
    params = block_params.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    passed = re.findall(r"(\w+)\s*=\s*args\b", wrap[1])
    return takes_any or all(name in params for name in passed)


KANDINSKY5 = Family(
    name="Kandinsky 5",
    class_names=("Kandinsky5",),
    stacks=(("visual_transformer_blocks", "double_block"),),
    stream_keys=("x",),
    hidden_key="x",
    patch_size_attr="patch_size",
    video_tokens="head",  # visual tokens only (text runs in its own blocks first)
    block_replace_works=kandinsky5_block_replace_works,
    note="block mode when its block replacement works; on ComfyUI 0.33 it is broken upstream "
    "(original_block returns a tensor, the loop reads ['x']), so whole-model mode there",
)

LTXAV = replace(
    LTXV,
    name="LTX-2 (audio+video)",
    class_names=("LTXAVModel",),
    note="block argument img is a (video, audio) tuple: both residuals are cached, the "
    "decision and MoReg use the video part; latents arrive packed (latent_shapes), the video "
    "shape is the first",
)

MINIMAX_H3 = Family(
    name="MiniMax H3",
    class_names=("MiniMaxH3Model",),
    stacks=(("blocks", "double_block"),),
    patch_size=(1, 2, 2),
    video_tokens="tail",  # packed segments ..., audio, video: video is the last one
    note="one packed 2-D sequence [tokens, D] (batch 1) of text, audio and video segments; "
    "the [video, audio] output is computed from the stack output, MoReg on the video segment",
)

SEEDVR2 = Family(
    name="SeedVR2",
    class_names=("NaDiT",),
    stacks=(("blocks", "block"),),  # patches_replace["dit"][("block", i)]
    stream_keys=("vid",),
    hidden_key="vid",
    patch_size=(1, 2, 2),
    video_tokens="head",
    reuse_runs_first_block=True,
    note="NaDiT: packed video tokens [tokens, D]; the text stream is not needed after the "
    "stack, so only vid is carried; its output layer (vid_out_norm, 3B) reads the modulation "
    "its blocks leave in a per-call cache, so block 0 also runs on cached steps (1/N blocks)",
)

ANIMA = replace(
    COSMOS,
    name="Anima",
    class_names=("Anima",),
    is_video=False,
    note="image model on Cosmos predict2 (a MiniTrainDIT subclass): whole-model mode as Cosmos",
)

JOYIMAGE = replace(
    QWEN_IMAGE,
    name="JoyImage",
    class_names=("JoyImageTransformer3DModel",),
    stacks=(("double_blocks", "double_block"),),
    note="img/txt double-stream blocks; only img (target tokens first, then references) feeds "
    "the output, so only img is carried",
)

register(
    WAN_CAUSAL, WAN_SCAIL, WAN_ANIMATE2, WAN_DANCER, COGVIDEOX, KANDINSKY5, LTXAV, MINIMAX_H3,
    SEEDVR2, ANIMA, JOYIMAGE,
)
