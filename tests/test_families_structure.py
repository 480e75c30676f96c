"""Families by structure: subclasses, per-family checks, token layouts, tuple hidden states,
and calls that carry per-block model patches. Real ComfyUI classes; runs on every host."""

from __future__ import annotations

import comfy.ldm.wan.model as wan
import comfy.ops
import pytest
import torch
from comfyui_adacache.adacache import AdaCacheConfig, UnsupportedModelError
from comfyui_adacache.adacache.families import WHOLE, Family, family_for
from comfyui_adacache.adacache.families.recent import kandinsky5_block_replace_works
from comfyui_adacache.adacache.families.wan import WAN
from comfyui_adacache.nodes.patch import apply_adacache
from test_families_video import ALWAYS_REUSE, NEVER_REUSE
from wan_fixtures import conds, load_wan, sample, summary_of

OPS = comfy.ops.disable_weight_init


def tiny_wan(cls=wan.WanModel, **kw):
    return cls(dim=128, ffn_dim=256, num_heads=1, num_layers=2, operations=OPS, **kw)


class StudioWan(wan.WanModel):
    """A custom node pack's subclass that keeps Wan's block loop."""


class StudioVace(wan.VaceWanModel):
    pass


class NoBlocksWan(wan.WanModel):
    def __init__(self, **kw):
        super().__init__(**kw)
        del self.blocks  # e.g. a pack that renames the stack


# -- families by structure -------------------------------------------------------------------
def test_a_subclass_of_a_supported_class_gets_its_parents_adapter():
    assert family_for(tiny_wan(StudioWan)).name == "Wan"
    assert family_for(tiny_wan(StudioVace, vace_layers=1, vace_in_dim=96)).name == "Wan"


def test_the_most_specific_supported_class_wins():
    # CameraWanModel is a WanModel subclass with its own adapter
    camera = tiny_wan(wan.CameraWanModel, model_type="camera_2.2", in_dim=36)
    assert family_for(camera).name == "Wan camera"


def test_a_subclass_missing_what_the_adapter_relies_on_is_refused_naming_it():
    with pytest.raises(UnsupportedModelError, match=r"'NoBlocksWan' \(a subclass of WanModel\)"
                       r".*block list 'blocks'"):
        family_for(tiny_wan(NoBlocksWan))


def test_apply_refuses_it_too():
    model = load_wan("t2v", layers=2)
    other = model.clone()
    other.add_object_patch("diffusion_model", tiny_wan(NoBlocksWan))
    with pytest.raises(UnsupportedModelError, match="no block list 'blocks'"):
        apply_adacache(other, AdaCacheConfig())


class SingleStreamDiT(torch.nn.Module):
    """Another pack's model that happens to share Krea 2's (generic) class name."""

    def forward(self, x, *args, **kwargs):
        return x


def test_a_generic_class_name_is_checked_for_the_modules_its_family_has():
    with pytest.raises(UnsupportedModelError, match=r"Krea 2 adapter cannot handle "
                       r"'SingleStreamDiT': it has no attribute 'txtfusion'"):
        family_for(SingleStreamDiT())


# -- token layouts for MoReg -------------------------------------------------------------------
def numbered(tokens: int, batch: int = 1, dim: int = 2) -> torch.Tensor:
    """[batch, tokens, dim] whose value is the token index, to see which tokens were picked."""
    return torch.arange(tokens, dtype=torch.float32).view(1, -1, 1).expand(batch, tokens, dim)


def test_frames_skip_reference_tokens_before_and_in_context_tokens_after_the_video():
    latent = (1, 16, 3, 4, 4)  # 3 frames x 4 tokens (patch 1x2x2)
    hidden = numbered(4 + 12 + 8)  # [ref_conv frame | video | in-context reference latents]
    frames = WAN.frames(hidden, latent, tail_tokens=8)
    assert frames.shape == (1, 3, 4, 2)
    assert frames[0, :, :, 0].flatten().tolist() == list(range(4, 16))


def test_tail_tokens_count_the_patchified_latents_of_the_named_conds():
    ctx = [torch.zeros(1, 16, 1, 4, 4), torch.zeros(1, 16, 2, 4, 4)]  # 4 + 8 tokens
    assert WAN.tail_tokens({"context_latents": ctx}) == 12
    assert WAN.tail_tokens({}) == 0


def test_lead_frames_are_not_video():
    family = Family("x", ("X",), lead_frames=1)
    frames = family.frames(numbered(16), (1, 16, 4, 4, 4))
    assert frames.shape == (1, 3, 4, 2)
    assert frames[0, 0, 0, 0].item() == 4  # frame 0 (the reference slot) skipped


def test_packed_sequences_are_read_as_one_sample():
    family = Family("x", ("X",), video_tokens="tail")
    frames = family.frames(numbered(5 + 12)[0], (1, 16, 3, 4, 4))  # [tokens, D]
    assert frames.shape == (1, 3, 4, 2) and frames[0, 0, 0, 0].item() == 5


# -- tuple hidden states (LTX-2: img = (video, audio)) -----------------------------------------
def test_tuple_hidden_states_are_carried_part_by_part_and_rebuilt():
    family = Family("x", ("X",))
    video, audio = torch.ones(1, 6, 4), torch.full((1, 3, 4), 2.0)
    args = {"img": (video, audio), "vec": "kept"}
    carried = family.carried(args)
    assert set(carried) == {"img.0", "img.1"}
    out = family.with_carried(args, {k: v + 1 for k, v in carried.items()})
    assert isinstance(out["img"], tuple) and out["vec"] == "kept"
    assert torch.equal(out["img"][0], video + 1) and torch.equal(out["img"][1], audio + 1)
    assert family.metric_part(args) is video  # the decision is taken on the video part
    split = family.split_output((video, audio), carried)
    assert split.keys() == carried.keys()


# -- Kandinsky 5: block mode only where its block replacement works ----------------------------
class _Block(torch.nn.Module):
    def forward(self, visual_embed, context=None):
        return visual_embed


class _BrokenLoop(torch.nn.Module):
    """The shape of ComfyUI 0.33's loop: the wrapper returns a tensor, passes x=."""

    def __init__(self):
        super().__init__()
        self.visual_transformer_blocks = torch.nn.ModuleList([_Block()])

    def forward_orig(self, x, blocks_replace):
        for i, block in enumerate(self.visual_transformer_blocks):
            def block_wrap(args, block=block):
                return block(x=args["x"], context=args["context"])
            x = blocks_replace[("double_block", i)]({"x": x}, {"original_block": block_wrap})["x"]
        return x


class _FixedLoop(_BrokenLoop):
    def forward_orig(self, x, blocks_replace):
        for i, block in enumerate(self.visual_transformer_blocks):
            def block_wrap(args, block=block):
                return {"x": block(visual_embed=args["x"], context=args["context"])}
            x = blocks_replace[("double_block", i)]({"x": x}, {"original_block": block_wrap})["x"]
        return x


def test_kandinsky5_block_replacement_check():
    assert not kandinsky5_block_replace_works(_BrokenLoop())
    assert kandinsky5_block_replace_works(_FixedLoop())
    assert not kandinsky5_block_replace_works(torch.nn.Linear(1, 1))  # unreadable: whole mode


def test_kandinsky5_on_this_host_gets_the_mode_its_loop_allows():
    from comfy_host import host_class

    cls = host_class("comfy.ldm.kandinsky5.model", "Kandinsky5")
    model = cls(in_text_dim=32, in_text_dim2=32, time_dim=64, model_dim=64, ff_dim=128,
                num_text_blocks=1, num_visual_blocks=2, axes_dims=(8, 12, 12), operations=OPS)
    family = family_for(model)
    assert family.name == "Kandinsky 5"
    assert (family.mode == WHOLE) == (not kandinsky5_block_replace_works(model))


# -- per-block model patches (patches["double_block"], e.g. Uni3C) -----------------------------
def test_calls_carrying_per_block_patches_are_computed():
    """Newer WanModel runs patches['double_block'] after every block even when the blocks are
    replaced, so a reused step would add the stored residual and the patch's effect again."""
    model = load_wan("t2v", layers=2).clone()
    seen = []

    def shift(args):  # a model patch in the style of Uni3C: adds to the hidden state
        seen.append(args.get("block_index"))
        return {**args, "img": args["img"] + 0.01}

    model.set_model_double_block_patch(shift)
    positive, negative = conds()
    vanilla = sample(model, steps=10, positive=positive, negative=negative)
    never = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=NEVER_REUSE))
    assert torch.equal(sample(never, steps=10, positive=positive, negative=negative), vanilla)
    fast = apply_adacache(model, AdaCacheConfig(preset="custom", codebook=ALWAYS_REUSE))
    out = sample(fast, steps=10, positive=positive, negative=negative)
    s = summary_of(fast, out)
    assert s["reused_steps"] == 0 and s["computed_steps"] == 10
    assert any("model patches between blocks" in w for w in s["warnings"])
    assert torch.equal(out, vanilla)

