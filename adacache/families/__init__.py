"""Per-family adapters, described by data: where the block stack is and how tokens are laid out.

Two modes:
- ``blocks``: every block of the stack(s) is routed through ``patches_replace["dit"]``; on a
  cached step the first block adds the stored stack residual(s) and the others pass their
  input through. ``stream_keys`` are the block-argument tensors the stack carries (``img``,
  and ``txt`` for double-stream models); when a later single-stream stack joins them into one
  tensor, ``joined`` says in which order so its output can be split back.
- ``whole``: for models without block replacement, the diffusion model's forward is skipped and
  its output residual (output - input) reused; the metric is taken on that output residual.

Nothing here imports ComfyUI. Family modules register themselves with ``register``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

BLOCKS, WHOLE = "blocks", "whole"


@dataclass(frozen=True)
class Family:
    name: str
    class_names: tuple[str, ...]  # diffusion_model classes this adapter accepts
    mode: str = BLOCKS
    stacks: tuple[tuple[str, str], ...] = ()  # (module list attribute, patches_replace kind)
    stream_keys: tuple[str, ...] = ("img",)  # block-arg tensors carried through the stack
    hidden_key: str = "img"  # the block-arg tensor whose residual is the metric
    joined: str | None = None  # "txt_first" / "img_first": single stream = cat of the two
    output_module: str | None = None  # module whose forward(x, ...) input is the stack output
    # modules run between blocks, silenced on cached evaluations: (dotted path of a module or
    # module list, what forward returns: "input" (the updated hidden state), "addend" (a term
    # the model adds to it) or "addend_and_input" (a (term, its own first argument) pair))
    silenced_modules: tuple[tuple[str, str], ...] = ()
    patch_size_attr: str | None = None  # diffusion-model attribute overriding patch_size
    patch_size: tuple[int, int, int] = (1, 2, 2)  # latent (t, h, w) per token
    video_tokens: str = "tail"  # where the T*h*w video tokens sit in a longer sequence
    is_video: bool = True
    note: str = ""

    def frames(
        self, hidden: torch.Tensor, latent_shape: tuple[int, ...], img_tokens: int | None = None
    ) -> torch.Tensor | None:
        """The video part of a residual as [B, T, tokens per frame, D], or None (no frames).

        ``hidden`` is [B, L, D] (blocks mode) or the latent-shaped [B, C, T, H, W] output
        residual (whole mode). ``img_tokens`` is the length of the ``img`` stream at the stack
        input: a joined single-stream residual is first cut to its img part, in which the video
        tokens sit at ``video_tokens``.
        """
        if not self.is_video or len(latent_shape) != 5:
            return None
        if hidden.ndim == 5:  # [B, C, T, H, W]
            if hidden.shape[2] < 2:
                return None
            return hidden.flatten(3).permute(0, 2, 3, 1)
        if hidden.ndim != 3:
            return None
        if self.joined is not None and img_tokens and hidden.shape[1] > img_tokens:
            first = self.joined == "img_first"
            hidden = hidden[:, :img_tokens] if first else hidden[:, -img_tokens:]
        pt, ph, pw = self.patch_size
        t = -(-latent_shape[2] // pt)
        hw = -(-latent_shape[3] // ph) * -(-latent_shape[4] // pw)
        n = t * hw
        if t < 2 or hidden.shape[1] < n:
            return None
        tokens = hidden[:, -n:] if self.video_tokens == "tail" else hidden[:, :n]
        return tokens.reshape(hidden.shape[0], t, hw, hidden.shape[-1])

    def split_output(self, hidden: torch.Tensor, stack_input: dict) -> dict:
        """The stack output per stream key, from the last block's hidden state."""
        if self.joined is None or len(self.stream_keys) == 1:
            return {self.stream_keys[0]: hidden}
        first = "txt" if self.joined == "txt_first" else "img"
        second = "img" if first == "txt" else "txt"
        n = stack_input[first].shape[1]
        return {first: hidden[:, :n], second: hidden[:, n:]}

    @property
    def support(self) -> str:
        return "block stack" if self.mode == BLOCKS else "whole model"


FAMILIES: list[Family] = []


def register(*families: Family) -> None:
    FAMILIES.extend(families)


class UnsupportedModelError(TypeError):
    pass


def family_for(diffusion_model) -> Family:
    cls_name = type(diffusion_model).__name__
    for family in FAMILIES:
        if cls_name in family.class_names:
            size = getattr(diffusion_model, family.patch_size_attr or "", None)
            if size is not None and len(size) == 3:  # e.g. HunyuanVideo (1,2,2) vs 1.5 (1,1,1)
                return dataclasses.replace(family, patch_size=tuple(int(v) for v in size))
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


# Registration order is lookup order: Wan first, then the other video families, then images.
# isort: off
from . import wan  # noqa: E402,F401
from . import video  # noqa: E402,F401
from . import image  # noqa: E402,F401
# isort: on
