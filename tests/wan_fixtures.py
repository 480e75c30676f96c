"""Tiny random-initialised Wan checkpoints, loaded the way "Load Diffusion Model" loads them."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import comfy.ldm.wan.model as wan
import comfy.ops
import comfy.sample
import comfy.samplers
import comfy.sd
import torch
from comfyui_adacache.adacache import AdaCacheConfig, Codebook
from comfyui_adacache.nodes.patch import apply_adacache
from safetensors.torch import save_file

TMP = Path(tempfile.mkdtemp(prefix="adacache-tests-"))


def random_state_dict(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(v.shape, generator=g) * (0.02 if v.ndim > 1 else 0.01)).contiguous()
        for k, v in module.state_dict().items()
    }


@functools.cache
def wan_checkpoint(kind: str = "t2v", layers: int = 4, seed: int = 0, heads: int = 1) -> Path:
    ops = comfy.ops.disable_weight_init
    # ComfyUI reads Wan's head count from its width (128 per head)
    common = dict(dim=128 * heads, ffn_dim=256 * heads, num_heads=heads, num_layers=layers,
                  operations=ops)
    if kind == "t2v":
        model = wan.WanModel(**common)
    elif kind == "i2v":
        model = wan.WanModel(model_type="i2v", in_dim=36, **common)
    elif kind == "vace":
        model = wan.VaceWanModel(vace_layers=2, vace_in_dim=96, **common)
    else:
        raise ValueError(kind)
    path = TMP / f"wan_{kind}_{layers}_{seed}_{heads}.safetensors"
    save_file(random_state_dict(model, seed), str(path))
    return path


def load_wan(kind: str = "t2v", layers: int = 4, seed: int = 0, heads: int = 1):
    """A fresh ModelPatcher for a tiny Wan, via comfy.sd.load_diffusion_model (UNETLoader)."""
    return comfy.sd.load_diffusion_model(str(wan_checkpoint(kind, layers, seed, heads)))


def text(seed: int, length: int = 12, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, 4096, generator=torch.Generator().manual_seed(seed))


def conds(pos_len: int = 12, neg_len: int = 12, **extra):
    return [[text(1, pos_len), dict(extra)]], [[text(2, neg_len) * 0.5, dict(extra)]]


def latent(frames: int = 5, size: int = 16, batch: int = 1, channels: int = 16):
    return torch.zeros(batch, channels, frames, size, size)


def sample(model, *, steps=12, cfg=5.0, sampler="euler", scheduler="simple", lat=None,
           positive=None, negative=None, seed=42, start_step=None, last_step=None,
           force_full_denoise=False, noise=None, add_noise=True):
    """What KSampler / KSamplerAdvanced call: comfy.sample.sample."""
    lat = latent() if lat is None else lat
    if positive is None:
        positive, negative = conds()
    if noise is None:
        noise = comfy.sample.prepare_noise(lat, seed)
    if not add_noise:
        noise = torch.zeros_like(lat)
    return comfy.sample.sample(
        model, noise, steps, cfg, sampler, scheduler, positive, negative, lat,
        start_step=start_step, last_step=last_step, force_full_denoise=force_full_denoise,
        seed=seed, disable_pbar=True,
    )


# Codebooks and helpers shared by the tests that patch a tiny Wan with AdaCache
NEVER_REUSE = Codebook((1.0,), (1,))
ALWAYS_REUSE = Codebook((1.0,), (4,))  # next compute 4 steps after each compute step


def patched(model, codebook=ALWAYS_REUSE, **kw):
    return apply_adacache(model, AdaCacheConfig(preset="custom", codebook=codebook, **kw))


def handle_of(model):
    """The AdaCache handle a patched model (and every clone of it) carries."""
    return model.model_options["transformer_options"]["adacache_handle"]


def summary_of(model, latent=None) -> dict:
    """The summary of the run of ``model`` that produced ``latent`` (samples or a LATENT
    dict), found as AdaCache Report finds it; without ``latent``, the model's last run."""
    handle = handle_of(model)
    if latent is None:
        return handle.last_summary
    summary = handle.summary_for(latent["samples"] if isinstance(latent, dict) else latent)
    assert summary is not None, "no recent run of this model produced this latent"
    return summary


def node_model(output):
    """The MODEL from a V3 node's NodeOutput."""
    return output.result[0] if hasattr(output, "result") else output[0]


class BlockCounter:
    """Counts real executions of transformer blocks (forward pre-hooks on the block modules)."""

    def __init__(self, diffusion_model, stacks=("blocks",)):
        blocks = []
        for attr in stacks:
            stack = getattr(diffusion_model, attr)
            blocks += list(stack.values() if isinstance(stack, torch.nn.ModuleDict) else stack)
        self.n_blocks, self.calls = len(blocks), 0
        self.handles = [b.register_forward_pre_hook(self._hook) for b in blocks]

    def _hook(self, *_):
        self.calls += 1

    @property
    def stack_runs(self) -> float:
        return self.calls / self.n_blocks

    def close(self):
        for h in self.handles:
            h.remove()
