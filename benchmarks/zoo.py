"""The validation zoo, loaded and sampled through ComfyUI's real path (benchmarks and tests).

    zoo = load("hunyuan")           # or "demo", "cosmos"
    rgb, out = zoo.run(zoo.model, "rotation", seed=100, steps=30, cfg=3.0)

A zoo model is a diffusion model file loaded with ``comfy.sd.load_diffusion_model`` (the code
behind "Load Diffusion Model": ComfyUI's own detection picks the model type), its per-class
conditioning embeddings (``*_scenes.safetensors``), and the world it was trained on (scene names,
a renderer, the latent mapping). Sampling is ``comfy.sample.sample`` with a real sampler
(euler/simple by default); decoding undoes the model type's latent format
(``process_latent_in``) and then the exact 2x2 pixel-unshuffle mapping of ``nodes/demo_latent.py``.

=======  ============================================  =============================  ==========
name     file                                          model type (ComfyUI)           data
=======  ============================================  =============================  ==========
demo     models/diffusion_models/adacache_demo_wan     WAN21 (WanModel)               demo, 4
hunyuan  models/zoo/adacache_zoo_hunyuan               HunyuanVideo (HunyuanVideo)    zoo, 8
cosmos   models/zoo/adacache_zoo_cosmos                CosmosPredict2 (MiniTrainDIT)  zoo, 8
=======  ============================================  =============================  ==========

The host must be booted first (``tests/comfy_host.py``: ``boot_host()``); nothing here imports
the pack.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import load_module  # noqa: E402

ZOO_DIR = ROOT / "models" / "zoo"

FILES = {
    "demo": (ROOT / "models" / "diffusion_models" / "adacache_demo_wan.safetensors",
             ROOT / "models" / "adacache_demo_scenes.safetensors"),
    "hunyuan": (ZOO_DIR / "adacache_zoo_hunyuan.safetensors",
                ZOO_DIR / "adacache_zoo_hunyuan_scenes.safetensors"),
    "cosmos": (ZOO_DIR / "adacache_zoo_cosmos.safetensors",
               ZOO_DIR / "adacache_zoo_cosmos_scenes.safetensors"),
}
NAMES = tuple(FILES)
ZOO_NAMES = tuple(n for n in NAMES if n != "demo")
# the model type ComfyUI's detection must give each file, and its diffusion-model class
MODEL_TYPES = {"demo": ("WAN21", "WanModel"), "hunyuan": ("HunyuanVideo", "HunyuanVideo"),
               "cosmos": ("CosmosPredict2", "MiniTrainDIT")}


def world(name: str):
    """The scene module a model was trained on: ``nodes/demo_latent.py`` or ``zoo_scenes.py``."""
    if name == "demo":
        return load_module("adacache_demo_latent", ROOT / "nodes" / "demo_latent.py")
    return load_module("adacache_zoo_scenes", ROOT / "benchmarks" / "zoo_scenes.py")


@dataclass
class ZooModel:
    name: str
    model: object  # comfy.model_patcher.ModelPatcher, as "Load Diffusion Model" returns it
    scenes: list[str]
    conds: dict[str, tuple[list, list]]  # scene -> (positive, negative) CONDITIONING
    latent: torch.Tensor  # the empty LATENT samples [1, 16, T, H, W]
    world: object = field(repr=False)

    def sample(self, model, scene: str, seed: int, steps: int = 30, cfg: float = 3.0,
               sampler: str = "euler", scheduler: str = "simple") -> torch.Tensor:
        """LATENT samples from ``comfy.sample.sample`` (``model``: this one or a patched clone)."""
        import comfy.sample

        pos, neg = self.conds[scene]
        noise = comfy.sample.prepare_noise(self.latent, seed)
        return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, pos, neg,
                                   self.latent, seed=seed, disable_pbar=True)

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """LATENT samples -> RGB [B, 3, T, H, W] in [0, 1] (the model type's latent format
        undone, then the exact inverse of the pixel-unshuffle mapping)."""
        z = self.model.model.latent_format.process_in(samples.float().cpu())
        return self.world.latent_to_rgb(z)

    def run(self, model, scene: str, seed: int, **kwargs) -> tuple[torch.Tensor, float]:
        """(decoded RGB, seconds spent in the sampler)."""
        start = time.perf_counter()
        out = self.sample(model, scene, seed, **kwargs)
        return self.decode(out), time.perf_counter() - start

    def render(self, scene: str, seed: int, count: int = 1) -> torch.Tensor:
        """``count`` training-data videos of ``scene`` (what the model should produce)."""
        g = torch.Generator().manual_seed(seed)
        classes = torch.full((count,), self.scenes.index(scene), dtype=torch.long)
        return self.world.render_scenes(classes, g)


def load_conditioning(path: Path) -> tuple[list[str], dict[str, tuple[list, list]]]:
    """Scene names and per-scene (positive, negative) CONDITIONING from a scenes file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        names = json.loads(f.metadata()["scenes"])
        emb, neg = f.get_tensor("embeddings"), f.get_tensor("negative")
        keys = set(f.keys())
        pooled = f.get_tensor("pooled") if "pooled" in keys else None
        neg_pooled = f.get_tensor("negative_pooled") if "negative_pooled" in keys else None
    conds = {}
    for i, scene in enumerate(names):
        pos_extra = {} if pooled is None else {"pooled_output": pooled[i][None].clone()}
        neg_extra = {} if neg_pooled is None else {"pooled_output": neg_pooled[None].clone()}
        conds[scene] = ([[emb[i][None].clone(), pos_extra]], [[neg[None].clone(), neg_extra]])
    return names, conds


def load(name: str, weights: Path | None = None) -> ZooModel:
    """Load zoo model ``name`` (``demo``, ``hunyuan``, ``cosmos``) the way ComfyUI does
    (``weights``: another file of that model, e.g. a new training run's)."""
    import comfy.sd

    if name not in FILES:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(NAMES)}")
    model_file, scenes_file = FILES[name]
    model_file = Path(weights) if weights is not None else model_file
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file} is missing: train it with "
                                f"scripts/train_zoo_model.py --model {name}")
    model = comfy.sd.load_diffusion_model(str(model_file))
    scenes, conds = load_conditioning(scenes_file)
    w = world(name)
    latent = torch.zeros(1, 16, w.FRAMES, w.RGB_HW // 2, w.RGB_HW // 2)
    return ZooModel(name=name, model=model, scenes=scenes, conds=conds, latent=latent, world=w)


def resolve(names: str) -> list[str]:
    """``all`` -> every model, else a comma-separated list checked against NAMES."""
    out = list(NAMES) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in out if n not in FILES]
    if unknown:
        raise SystemExit(f"unknown zoo model(s) {unknown}; known: {', '.join(NAMES)} or all")
    return out


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8)
