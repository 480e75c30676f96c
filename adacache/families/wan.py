"""Wan 2.1 / 2.2 (t2v, i2v, VACE, two-expert chain)."""

from . import Family, register

WAN = Family(
    name="Wan",
    class_names=("WanModel", "VaceWanModel"),
    stacks=(("blocks", "double_block"),),
    # the head's input is the stack output including VACE hints added after the last block
    output_module="head",
    silenced_modules=(("vace_blocks", "addend_and_input"),),
    # newer hosts append in-context reference latents (Bernini) after the video tokens
    tail_latents=("context_latents",),
    note="t2v, i2v (36-channel input, CLIP-vision tokens), VACE, Wan 2.2 two-expert chain; "
    "reference tokens (ref_conv) are prepended and in-context reference latents appended, "
    "MoReg sees only the video tokens between them",
)

register(WAN)
