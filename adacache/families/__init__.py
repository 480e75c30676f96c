"""Per-family adapters, described by data: where the block stack is and how tokens are laid out.

Two modes:
- ``blocks``: every block of the stack(s) is routed through ``patches_replace["dit"]``; on a
  cached step the first block adds the stored stack residual(s) and the others pass their
  input through. ``stream_keys`` are the block-argument tensors the stack carries (``img``,
  and ``txt`` for double-stream models); when a later single-stream stack joins them into one
  tensor, ``joined`` says in which order so its output can be split back.
- ``whole``: for models without block replacement, the diffusion model's forward is skipped and
  its output residual (output - input) reused; the metric is taken on that output residual.

A model is matched by structure: the most specific class of its MRO that a family names wins
(a subclass of a supported class is accepted), then ``check`` verifies that the instance has
what the adapter relies on (its block lists, output module, required attributes).

Hidden states may be tuples (LTX-2's block argument ``img`` is ``(video, audio)``): every part
is cached, keyed ``img.0``, ``img.1``; the decision and MoReg use part 0. Packed 2-D hidden
states ``[tokens, D]`` (SeedVR2, MiniMax H3) are cached per stream along dim 0 like batches;
MoReg reads a stream's first sample.

Nothing here imports ComfyUI. Family modules register themselves with ``register``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange

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
    # module(s) whose forward(x, ...) input is the stack output (the one the model runs)
    output_module: str | tuple[str, ...] | None = None
    # modules run between blocks, silenced on cached evaluations: (dotted path of a module or
    # module list, what forward returns: "input" (the updated hidden state), "addend" (a term
    # the model adds to it) or "addend_and_input" (a (term, its own first argument) pair))
    silenced_modules: tuple[tuple[str, str], ...] = ()
    patch_size_attr: str | None = None  # diffusion-model attribute overriding patch_size
    patch_size: tuple[int, int, int] = (1, 2, 2)  # latent (t, h, w) per token
    video_tokens: str = "tail"  # where the T*h*w video tokens sit in a longer sequence
    is_video: bool = True
    # model kwargs (conds) whose latents become tokens after the video tokens (Wan in-context
    # references, SCAIL pose latents): not video frames for MoReg
    tail_latents: tuple[str, ...] = ()
    lead_frames: int = 0  # leading latent frames that are a reference slot, not video
    # transformer_options keys under which the model's own loop bypasses block replacement
    # (e.g. CausalWan's frame-by-frame ar_state): such calls run unpatched
    bypass_options: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # further diffusion-model attributes the adapter relies on
    # the model reads state its first block leaves behind (SeedVR2's per-call Cache feeds its
    # output layer): on cached evaluations block 0 still runs, its output unused
    reuse_runs_first_block: bool = False
    # whether block replacement works on this instance; if not, the family runs whole-model
    block_replace_works: Callable[[object], bool] | None = None
    note: str = ""

    @property
    def output_modules(self) -> tuple[str, ...]:
        if self.output_module is None:
            return ()
        if isinstance(self.output_module, str):
            return (self.output_module,)
        return tuple(self.output_module)

    def check(self, diffusion_model) -> list[str]:
        """What this instance lacks of what the adapter relies on (empty: usable)."""
        missing = []
        if self.mode == BLOCKS:
            for attr, _ in self.stacks:
                blocks = getattr(diffusion_model, attr, None)
                if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) == 0:
                    missing.append(f"block list {attr!r}")
            if self.output_modules and not any(
                _module_at(diffusion_model, m) is not None for m in self.output_modules
            ):
                missing.append(f"output module {' or '.join(map(repr, self.output_modules))}")
        missing += [f"attribute {a!r}" for a in self.requires if _module_at(diffusion_model, a)
                    is None]
        if not callable(getattr(diffusion_model, "forward", None)):
            missing.append("forward")
        return missing

    # -- hidden states: tensors or tuples of tensors -------------------------------------------
    def carried(self, args: dict) -> dict[str, torch.Tensor]:
        """The carried block-arg tensors, tuple entries split into ``key.0``, ``key.1``, ..."""
        out = {}
        for key in self.stream_keys:
            value = args[key]
            if isinstance(value, (tuple, list)):
                out.update({f"{key}.{j}": part for j, part in enumerate(value)})
            else:
                out[key] = value
        return out

    def with_carried(self, args: dict, carried: dict[str, torch.Tensor]) -> dict:
        """``args`` with the carried tensors replaced (tuples rebuilt as they came)."""
        out = dict(args)
        for key in self.stream_keys:
            value = args[key]
            if isinstance(value, (tuple, list)):
                out[key] = type(value)(carried[f"{key}.{j}"] for j in range(len(value)))
            else:
                out[key] = carried[key]
        return out

    def metric_part(self, args: dict) -> torch.Tensor:
        """The hidden state the decision is taken on (part 0, the video, of a tuple)."""
        value = args[self.hidden_key]
        return value[0] if isinstance(value, (tuple, list)) else value

    # -- per-call token layout -----------------------------------------------------------------
    def tail_tokens(self, model_kwargs: dict) -> int:
        """Tokens the model appends after the video tokens for this call's conds."""
        n = 0
        for name in self.tail_latents:
            value = model_kwargs.get(name)
            for latent in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(latent, torch.Tensor) and latent.ndim == 5:
                    grid = zip(latent.shape[2:], self.patch_size, strict=True)
                    n += math.prod(-(-size // p) for size, p in grid)
        return n

    def frames(
        self,
        hidden: torch.Tensor,
        latent_shape: tuple[int, ...],
        img_tokens: int | None = None,
        tail_tokens: int = 0,
    ) -> torch.Tensor | None:
        """The video part of a residual as [B, T, tokens per frame, D], or None (no frames).

        ``hidden`` is [B, L, D] or packed [L, D] (blocks mode) or the latent-shaped
        [B, C, T, H, W] output residual (whole mode). ``img_tokens`` is the length of the
        ``img`` stream at the stack input: a joined single-stream residual is first cut to its
        img part, in which the video tokens sit at ``video_tokens``. ``tail_tokens`` follow the
        video tokens (``tail_tokens()``); ``lead_frames`` of the latent are not video.
        """
        if not self.is_video or len(latent_shape) != 5:
            return None
        if hidden.ndim == 5:  # [B, C, T, H, W]
            hidden = hidden[:, :, self.lead_frames:]
            if hidden.shape[2] < 2:
                return None
            return rearrange(hidden, "b c t h w -> b t (h w) c")
        if hidden.ndim == 2:  # one stream's packed sequence: its first sample's tokens lead
            hidden = hidden.unsqueeze(0)
        if hidden.ndim != 3:
            return None
        if self.joined is not None and img_tokens and hidden.shape[1] > img_tokens:
            first = self.joined == "img_first"
            hidden = hidden[:, :img_tokens] if first else hidden[:, -img_tokens:]
        pt, ph, pw = self.patch_size
        t = -(-latent_shape[2] // pt)
        hw = -(-latent_shape[3] // ph) * -(-latent_shape[4] // pw)
        n = t * hw
        if hidden.shape[1] < n + tail_tokens:
            return None
        end = hidden.shape[1] - tail_tokens if self.video_tokens == "tail" else n
        tokens = hidden[:, end - n + self.lead_frames * hw:end]
        t -= self.lead_frames
        if t < 2:
            return None
        return rearrange(tokens, "b (t hw) d -> b t hw d", t=t)

    def split_output(self, hidden, stack_input: dict) -> dict:
        """The stack output per carried key, from the last block's hidden state."""
        if isinstance(hidden, (tuple, list)):
            return self.carried({self.hidden_key: hidden})
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
    """The family of ``diffusion_model``: its most specific class (MRO order) that a family
    names, checked against what that adapter relies on."""
    cls = type(diffusion_model)
    family, matched = None, None
    for base in cls.__mro__:
        family = next((f for f in FAMILIES if base.__name__ in f.class_names), None)
        if family is not None:
            matched = base
            break
    if family is None:
        supported = "; ".join(f"{f.name} ({', '.join(f.class_names)})" for f in FAMILIES)
        raise UnsupportedModelError(
            f"AdaCache does not support the model class {cls.__name__!r} "
            f"({cls.__module__}). Supported families: {supported}."
        )
    if family.block_replace_works is not None and not family.block_replace_works(
        diffusion_model
    ):
        family = dataclasses.replace(family, mode=WHOLE)
    missing = family.check(diffusion_model)
    if missing:
        via = "" if matched is cls else f" (a subclass of {matched.__name__})"
        raise UnsupportedModelError(
            f"AdaCache's {family.name} adapter cannot handle {cls.__name__!r}{via}: it has no "
            + ", no ".join(missing)
        )
    size = getattr(diffusion_model, family.patch_size_attr or "", None)
    if size is not None and len(size) == 3:  # e.g. HunyuanVideo (1,2,2) vs 1.5 (1,1,1)
        family = dataclasses.replace(family, patch_size=tuple(int(v) for v in size))
    return family


def video_latent_shape(x, model_kwargs: dict) -> tuple[int, ...]:
    """The video latent's shape for one call: ``x``'s, or, for audio+video models whose
    latents arrive packed (``latent_shapes`` cond), the first (video) one."""
    shapes = model_kwargs.get("latent_shapes")
    if isinstance(shapes, (list, tuple)) and shapes and len(shapes[0]) == 5:
        return tuple(int(v) for v in shapes[0])
    return tuple(x.shape)


def _module_at(root, path: str):
    for part in path.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def block_keys(family: Family, diffusion_model) -> list[tuple[str, int]]:
    if family.mode == WHOLE:
        return []  # e.g. Kandinsky 5 while its block replacement is broken
    keys: list[tuple[str, int]] = []
    for attr, kind in family.stacks:
        keys += [(kind, i) for i in range(len(getattr(diffusion_model, attr)))]
    return keys


# Lookup is by the model's MRO (most specific class first); registration order only orders
# the list in error messages.
# isort: off
from . import wan  # noqa: E402,F401
from . import video  # noqa: E402,F401
from . import image  # noqa: E402,F401
from . import recent  # noqa: E402,F401
from . import recent_image  # noqa: E402,F401
# isort: on
