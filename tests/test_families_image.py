"""Image DiT families on tiny random-initialised instances of the real ComfyUI model classes.

Every family is built through ComfyUI's own model selection: ``model_config_from_unet_config``
picks the ``supported_models`` config (and so the ``model_base`` class, model sampling and latent
format) exactly as the loader does. SD3 goes all the way through ``comfy.sd.load_diffusion_model``
(detection infers every size of a tiny MMDiT from its state dict). The others cannot: their
detection hard-codes production sizes (Flux/Chroma 24 heads of 128, Qwen-Image 24x128, PixArt
1152, HiDream 20x128, AuraFlow dim 3072, Lumina2 only knows dims 2304/3840), so for them the
real ``comfy.model_base`` class is constructed from the supported_models config with tiny
dimensions and wrapped in a ``comfy.model_patcher.ModelPatcher`` — the last steps of
``comfy.sd.load_diffusion_model_state_dict``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import comfy.model_base
import comfy.model_detection
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sd
import pytest
import torch
from comfy.ldm.chroma.model import ChromaParams
from comfy.ldm.flux.model import FluxParams
from comfy_host import with_host_fields
from comfyui_adacache.adacache import (
    AdaCacheConfig,
    Codebook,
    MoRegSettings,
    family_for,
)
from comfyui_adacache.nodes.patch import apply_adacache
from safetensors.torch import save_file
from wan_fixtures import TMP, BlockCounter, handle_of, random_state_dict, sample, summary_of

NEVER_REUSE = Codebook((1.0,), (1,))
ALWAYS_REUSE = Codebook((1.0,), (4,))  # every distance -> next compute 4 steps later
STEPS = 10
ALWAYS_REUSE_PATTERN = "CC...C..CC"  # 0, 1 forced; 1 -> 5 -> 9; last two forced


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_g(seed))


def from_config(unet_config: dict, seed: int = 0):
    """A ModelPatcher for the real model_base class that ComfyUI selects for ``unet_config``."""
    model_config = comfy.model_detection.model_config_from_unet_config(dict(unet_config))
    assert model_config is not None, unet_config
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, "")
    model.load_model_weights(random_state_dict(model.diffusion_model, seed), "")
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def sd3_through_loader(seed: int = 0):
    """A tiny SD3 MMDiT saved as safetensors and loaded like "Load Diffusion Model" does."""
    unet_config = {
        "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
        "adm_in_channels": 32, "num_patches": 256, "pos_embed_max_size": 16,
        "pos_embed_scaling_factor": None, "x_block_self_attn_layers": [],
        "context_embedder_config": {
            "target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 128}
        },
    }
    built = from_config(unet_config, seed)
    path = TMP / f"sd3_tiny_{seed}.safetensors"
    save_file(built.model.diffusion_model.state_dict(), str(path))
    return comfy.sd.load_diffusion_model(str(path))


# (hidden 64 = 2 heads x 32, rope axes summing to 32)
FLUX_CONFIG = with_host_fields(FluxParams, dict(
    image_model="flux", guidance_embed=True, in_channels=16, out_channels=16, vec_in_dim=32,
    context_in_dim=32, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=1,
    depth_single_blocks=1, axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True,
), txt_ids_dims=[])
CHROMA_CONFIG = with_host_fields(ChromaParams, dict(
    image_model="chroma", in_channels=64, out_channels=64, context_in_dim=32, hidden_size=64,
    mlp_ratio=2.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[8, 12, 12],
    theta=10000, patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=1,
), txt_ids_dims=[], vec_in_dim=None)
QWEN_CONFIG = dict(
    image_model="qwen_image", in_channels=64, out_channels=16, num_layers=2,
    attention_head_dim=32, num_attention_heads=2, joint_attention_dim=32,
    axes_dims_rope=(8, 12, 12),
)
AURA_CONFIG = dict(  # cond_seq_dim 2048: AuraFlow's supported_models config matches on it
    max_seq=256, cond_seq_dim=2048, n_double_layers=1, n_layers=2, dim=64, n_heads=2,
    global_conddim=64, in_channels=4, out_channels=4, patch_size=2,
)
LUMINA2_CONFIG = dict(
    image_model="lumina2", patch_size=2, in_channels=16, dim=64, cap_feat_dim=32, n_layers=2,
    n_refiner_layers=1, n_heads=2, n_kv_heads=2, multiple_of=16, qk_norm=True,
    axes_dims=[8, 12, 12], axes_lens=[64, 64, 64],
)
ZIMAGE_STYLE_CONFIG = dict(  # Z-Image's NextDiT options (its own config matches only dim 3840)
    LUMINA2_CONFIG, z_image_modulation=True, time_scale=1000.0, pad_tokens_multiple=32,
    ffn_dim_multiplier=8.0 / 3.0, rope_theta=256.0,
    dim=256, n_layers=1, axes_dims=[32, 48, 48],  # z-image modulation needs dim >= 256
)
HIDREAM_CONFIG = dict(
    image_model="hidream", patch_size=2, in_channels=16, out_channels=None, num_layers=1,
    num_single_layers=1, attention_head_dim=32, num_attention_heads=2,
    caption_channels=[32, 32], text_emb_dim=32, num_routed_experts=2, num_activated_experts=1,
    axes_dims_rope=(16, 8, 8), max_resolution=(32, 32), llama_layers=[0, 1],
)
PIXART_CONFIG = dict(
    image_model="pixart_sigma", micro_condition=False, patch_size=2, in_channels=4,
    hidden_size=64, depth=2, num_heads=2, caption_channels=32, model_max_length=8,
    input_size=32, pe_interpolation=0.5,
)


@dataclass(frozen=True)
class Case:
    name: str  # the Family.name expected
    build: object  # () -> ModelPatcher
    base_class: str  # comfy.model_base class the selection must give
    mode: str
    stacks: tuple[str, ...]  # module lists whose block executions are counted
    latent: tuple[int, ...]
    cond: object  # seed -> cond dict (c_crossattn tensor first, extras after)
    extra: dict = field(default_factory=dict)
    id: str = ""


def _cond(ctx_dim, pooled=None, **more):
    def make(seed):
        d = {"ctx": _rand(seed, 1, 8, ctx_dim)}
        if pooled:
            d["pooled_output"] = _rand(seed + 100, 1, pooled)
        for k, shape in more.items():
            d[k] = _rand(seed + 200, *shape)
        return d

    return make


CASES = [
    Case("Flux", lambda: from_config(FLUX_CONFIG), "Flux", "block stack",
         ("double_blocks", "single_blocks"), (1, 16, 16, 16), _cond(32, pooled=32)),
    Case("Chroma", lambda: from_config(CHROMA_CONFIG), "Chroma", "block stack",
         ("double_blocks", "single_blocks"), (1, 16, 16, 16), _cond(32, pooled=32)),
    Case("Qwen-Image", lambda: from_config(QWEN_CONFIG), "QwenImage", "block stack",
         ("transformer_blocks",), (1, 16, 1, 16, 16), _cond(32)),
    Case("SD3 (MMDiT)", sd3_through_loader, "SD3", "block stack",
         ("joint_blocks",), (1, 16, 16, 16), _cond(32, pooled=32)),
    Case("AuraFlow", lambda: from_config(AURA_CONFIG), "AuraFlow", "block stack",
         ("double_layers", "single_layers"), (1, 4, 16, 16), _cond(2048)),
    Case("Lumina2 / Z-Image", lambda: from_config(LUMINA2_CONFIG), "Lumina2", "whole model",
         ("layers",), (1, 16, 16, 16), _cond(32)),
    Case("Lumina2 / Z-Image", lambda: from_config(ZIMAGE_STYLE_CONFIG), "Lumina2", "whole model",
         ("layers",), (1, 16, 16, 16), _cond(32), id="ZImage-style"),
    Case("HiDream", lambda: from_config(HIDREAM_CONFIG), "HiDream", "whole model",
         ("double_stream_blocks", "single_stream_blocks"), (1, 16, 16, 16),
         _cond(32, pooled=32, conditioning_llama3=(1, 2, 8, 32))),
    Case("PixArt", lambda: from_config(PIXART_CONFIG), "PixArt", "whole model",
         ("blocks",), (1, 4, 48, 48), _cond(32)),  # PixArt pos-embed: (H+W)/2 > 32
]
IDS = [c.id or c.base_class for c in CASES]


@functools.cache
def _model(index: int):
    return CASES[index].build()


@pytest.fixture(params=range(len(CASES)), ids=IDS, scope="module")
def case(request):
    return CASES[request.param], _model(request.param)


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    _vanilla.cache_clear()  # release the models before interpreter shutdown
    _model.cache_clear()


def conds(case: Case):
    def entry(seed, scale=1.0):
        d = case.cond(seed)
        return [[d.pop("ctx") * scale, d]]

    return entry(1), entry(2, 0.5)


def run(case: Case, model, cfg: float = 2.0) -> torch.Tensor:
    positive, negative = conds(case)
    return sample(model, steps=STEPS, cfg=cfg, lat=torch.zeros(case.latent),
                  positive=positive, negative=negative)


def patched(model, **kw):
    kw.setdefault("preset", "custom")
    return apply_adacache(model, AdaCacheConfig(**kw))


@functools.cache
def _vanilla(index: int) -> torch.Tensor:
    return run(CASES[index], _model(index))


def vanilla(case: Case) -> torch.Tensor:
    return _vanilla(CASES.index(case))


# -- tests -----------------------------------------------------------------------------------
def test_selection_and_family(case):
    c, model = case
    assert type(model.model).__name__ == c.base_class
    assert type(model.model) is getattr(comfy.model_base, c.base_class)
    family = family_for(model.model.diffusion_model)
    assert (family.name, family.support, family.is_video) == (c.name, c.mode, False)


def test_never_reusing_codebook_is_bit_identical_to_vanilla(case):
    c, model = case
    reference = vanilla(c)
    assert reference.shape == c.latent and torch.isfinite(reference).all()
    cached = patched(model, codebook=NEVER_REUSE)
    out = run(c, cached)
    assert out.dtype == reference.dtype and out.shape == reference.shape
    assert torch.equal(out, reference)
    s = summary_of(cached, out)
    assert s["reused_steps"] == 0 and s["computed_steps"] == STEPS
    assert s["family"] == c.name and s["mode"] == c.mode


def test_block_stack_executions_equal_computed_steps(case):
    c, model = case
    cached = patched(model, codebook=ALWAYS_REUSE)
    counter = BlockCounter(model.model.diffusion_model, c.stacks)
    try:
        out = run(c, cached)
    finally:
        counter.close()
    s = summary_of(cached)
    assert s["pattern"] == ALWAYS_REUSE_PATTERN
    # cond and uncond batched in one call per step: one stack execution per computed step
    assert counter.stack_runs == s["computed_steps"] == s["stack_runs"] == 5
    assert s["reused_calls"] == STEPS - 5 and s["streams"] == 2
    reference = vanilla(c)
    assert out.dtype == reference.dtype and out.shape == reference.shape
    assert torch.isfinite(out).all()
    assert not torch.equal(out, reference)  # cached steps really reused something


def test_moreg_on_an_image_model_says_it_has_no_motion_term(case, caplog):
    c, model = case
    cached = patched(model, codebook=ALWAYS_REUSE, moreg=MoRegSettings())
    with caplog.at_level(logging.INFO, logger="AdaCache"):
        out = run(c, cached)
    assert torch.isfinite(out).all() and out.shape == c.latent
    s = summary_of(cached, out)
    assert s["moreg"] is True
    notes = [w for w in s["warnings"] if "no motion term" in w]
    assert len(notes) == 1 and notes[0].startswith("MoReg: no motion term for image models")
    assert caplog.text.count("no motion term for image models") == 1
    assert all(r["motion"] is None for r in s["trace"])
    # no motion: MoReg leaves the schedule exactly as without it
    assert s["pattern"] == ALWAYS_REUSE_PATTERN


def _expected_residuals(c: Case, hidden: int) -> dict:
    """What one stream's stored stack residual holds: per block-arg key, or the output."""
    img_tokens = c.latent[-1] * c.latent[-2] // 4
    if c.mode == "whole model":
        return {"out": (1, *c.latent[1:])}
    if c.base_class in ("Flux", "Chroma", "AuraFlow"):  # double + single stream, txt joins in
        txt_tokens = 8 + (8 if c.base_class == "AuraFlow" else 0)  # Aura: 8 register tokens
        return {"img": (1, img_tokens, hidden), "txt": (1, txt_tokens, hidden)}
    return {"img": (1, img_tokens, hidden)}  # Qwen-Image, SD3: txt never reaches the output


def test_stored_residual_spans_the_stack_text_included_where_it_joins(case):
    c, model = case
    cached = patched(model, codebook=ALWAYS_REUSE)
    handle = handle_of(cached)
    seen, zero_txt = [], {"on": False}

    def record(executor, *args, **kw):
        run = handle.run
        if zero_txt["on"] and run.schedule.trace[run.schedule.current].computed is False:
            for stream in run.streams.values():  # a cached step without the text residual
                stream.residual = {**stream.residual, "txt": stream.residual["txt"] * 0}
        out = executor(*args, **kw)
        seen.append([{k: tuple(v.shape) for k, v in s.residual.items()}
                     for s in run.streams.values() if s.residual])
        return out

    # registered after AdaCache's wrapper, so it runs inside it (the run's call has begun)
    cached.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test", record)
    out = run(c, cached)
    hidden = {"SD3": 128, "AuraFlow": 64}.get(c.base_class, 64)
    expected = _expected_residuals(c, hidden)
    assert seen and all(entry == [expected, expected] for entry in seen)  # cond and uncond
    if "txt" in expected:
        # The joined single stream is cat(txt + R_txt, img + R_img) on cached steps, but with
        # the whole stack skipped nothing reads its text part before the model slices it off:
        # the output depends on R_img only (R_txt is kept so the joined output can be split,
        # and would matter only for a partial cache span).
        zero_txt["on"] = True
        assert torch.equal(run(c, cached), out)
