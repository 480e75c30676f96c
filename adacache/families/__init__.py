"""Per-family adapters, described by data: where the block stack is and how tokens are laid out.

The ComfyUI layer patches ``patches_replace["dit"][(kind, i)]`` for every block of the stack,
optionally hooks a module whose input is the stack output (``output_module``), and silences
``side_modules`` (modules that add into the hidden state between blocks, e.g. VACE hints) on
cached steps. Nothing here imports ComfyUI.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Family:
    name: str
    class_names: tuple[str, ...]  # diffusion_model classes this adapter accepts
    stacks: tuple[tuple[str, str], ...]  # (module list attribute, patches_replace block kind)
    hidden_key: str = "img"  # the block args entry holding the hidden state
    output_module: str | None = None  # module whose forward(x, ...) input is the stack output
    side_modules: tuple[str, ...] = ()  # module lists whose forward returns (hint, state)
    patch_size: tuple[int, int, int] = (1, 2, 2)  # latent (t, h, w) per token
    video_tokens: str = "tail"  # where the T*h*w video tokens sit in the hidden sequence
    is_video: bool = True
    note: str = ""

    def frames(self, hidden: torch.Tensor, latent_shape: tuple[int, ...]) -> torch.Tensor | None:
        """Video tokens of ``hidden`` [B, L, D] as [B, T, h*w, D], or None if not a video."""
        if not self.is_video or len(latent_shape) != 5:
            return None
        pt, ph, pw = self.patch_size
        t = -(-latent_shape[2] // pt)
        hw = -(-latent_shape[3] // ph) * -(-latent_shape[4] // pw)
        n = t * hw
        if t < 2 or hidden.shape[1] < n:
            return None
        tokens = hidden[:, -n:] if self.video_tokens == "tail" else hidden[:, :n]
        return tokens.reshape(hidden.shape[0], t, hw, hidden.shape[-1])


WAN = Family(
    name="Wan",
    class_names=("WanModel", "VaceWanModel"),
    stacks=(("blocks", "double_block"),),
    output_module="head",
    side_modules=("vace_blocks",),
    note="t2v, i2v (36-channel input, CLIP-vision tokens), VACE, Wan 2.2 two-expert chain",
)

FAMILIES: tuple[Family, ...] = (WAN,)


class UnsupportedModelError(TypeError):
    pass


def family_for(diffusion_model) -> Family:
    cls_name = type(diffusion_model).__name__
    for family in FAMILIES:
        if cls_name in family.class_names:
            return family
    supported = "; ".join(f"{f.name} ({', '.join(f.class_names)})" for f in FAMILIES)
    raise UnsupportedModelError(
        f"AdaCache does not support the model class {cls_name!r} "
        f"({type(diffusion_model).__module__}). Supported families: {supported}."
    )


def block_keys(family: Family, diffusion_model) -> list[tuple[str, int]]:
    keys: list[tuple[str, int]] = []
    for attr, kind in family.stacks:
        keys += [(kind, i) for i in range(len(getattr(diffusion_model, attr)))]
    return keys
