"""AdaCache Demo nodes: drive the small demo Wan model shipped in ``models/``.

Category "AdaCache Demo". Nothing else in the pack depends on these nodes. They and the demo
model are registered only when the environment variable ``ADACACHE_DEMO`` is ``1`` (``make
demo``, ``scripts/screenshots.py`` and the test server set it): a user's ComfyUI lists neither
unless they ask for the demo.

* AdaCache Demo Scene  - scene name -> positive / negative CONDITIONING (the shipped
  ``[1, 8, 4096]`` scene embeddings; the negative is all zeros, as in training).
* AdaCache Demo Decode - LATENT -> IMAGE frames with the exactly invertible latent mapping of
  ``demo_latent.py`` (Wan 2.1 latent format undone first); optional nearest-neighbour upscale.

The per-step trace of a run is shown by the pack's own output node AdaCache Report (report.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from comfy_api.latest import io

from . import demo_latent

CATEGORY = "AdaCache Demo"
PACK_ROOT = Path(__file__).resolve().parents[1]
SCENES_FILE = PACK_ROOT / "models" / "adacache_demo_scenes.safetensors"
MODELS_DIR = PACK_ROOT / "models" / "diffusion_models"
MODEL_NAME = "adacache_demo_wan.safetensors"
DEMO_ENV = "ADACACHE_DEMO"


def demo_enabled(environ=None) -> bool:
    """Whether the user asked for the demo: ``ADACACHE_DEMO=1`` (or true/yes/on)."""
    value = (os.environ if environ is None else environ).get(DEMO_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def register_demo_model() -> bool:
    """Adds the shipped demo model's folder to ComfyUI's diffusion models, if the demo is on."""
    if not demo_enabled():
        return False
    import folder_paths

    folder_paths.add_model_folder_path("diffusion_models", str(MODELS_DIR))
    return True

_cache: dict = {}


def load_scenes() -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(scene names, embeddings [S, L, 4096], negative [L, 4096]) from the shipped file."""
    if "scenes" not in _cache:
        from safetensors import safe_open

        with safe_open(str(SCENES_FILE), framework="pt") as f:
            names = json.loads(f.metadata()["scenes"])
            _cache["scenes"] = (names, f.get_tensor("embeddings"), f.get_tensor("negative"))
    return _cache["scenes"]


def decode_latent(samples: torch.Tensor) -> torch.Tensor:
    """ComfyUI LATENT samples [B, 16, T, H, W] (Wan 2.1 format) -> RGB [B, 3, T, 2H, 2W]."""
    import comfy.latent_formats

    z = comfy.latent_formats.Wan21().process_in(samples.float().cpu())
    return demo_latent.latent_to_rgb(z)


def encode_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [B, 3, T, 2H, 2W] in [0, 1] -> ComfyUI LATENT samples (Wan 2.1 format)."""
    import comfy.latent_formats

    return comfy.latent_formats.Wan21().process_out(demo_latent.rgb_to_latent(rgb))


class AdaCacheDemoScene(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheDemoScene",
            display_name="AdaCache Demo Scene",
            category=CATEGORY,
            description="Scene prompt for the AdaCache demo model (adacache_demo_wan): "
            "its shipped per-scene embedding as CONDITIONING, plus the zero negative.",
            inputs=[io.Combo.Input("scene", options=demo_latent.SCENES, default="static")],
            outputs=[io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, scene) -> io.NodeOutput:
        names, emb, neg = load_scenes()
        pos = emb[names.index(scene)][None].clone()
        return io.NodeOutput([[pos, {}]], [[neg[None].clone(), {}]])


class AdaCacheDemoDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheDemoDecode",
            display_name="AdaCache Demo Decode",
            category=CATEGORY,
            description="Latent -> frames for the AdaCache demo model (exact inverse of its "
            "2x2 pixel-unshuffle latent mapping; no VAE).",
            inputs=[io.Latent.Input("samples"),
                    io.Int.Input("upscale", default=8, min=1, max=32,
                                 tooltip="nearest-neighbour upscale of the 16x16 frames")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, samples, upscale) -> io.NodeOutput:
        rgb = decode_latent(samples["samples"])  # [B, 3, T, H, W]
        frames = rgb.permute(0, 2, 3, 4, 1).reshape(-1, rgb.shape[3], rgb.shape[4], 3)
        if upscale > 1:
            frames = frames.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
        return io.NodeOutput(frames.contiguous())


DEMO_NODES = [AdaCacheDemoScene, AdaCacheDemoDecode]
