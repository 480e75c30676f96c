"""Image families added to ComfyUI after 0.3.75 (read from ComfyUI 0.33.0's model code).

Block stack, from each model's block loop:
- Lens (lens/model.py) and Mage-Flow (mage_flow/model.py): Qwen-Image style double-stream
  blocks, ``("double_block", i)`` gets and returns ``img`` / ``txt``; only ``img`` feeds
  ``norm_out`` / ``proj_out`` after the last block, so only ``img`` is carried.

Whole model (no ``patches_replace`` in their loops; each forward is a pure function of its
inputs, output shaped like ``x``, no state kept across steps): PixelDiT (and PiD, a subclass),
OmniGen2, Boogu, Ideogram 4, Krea 2, ERNIE-Image. HiDream-O1 too, although its decoder layers
(``language_model.layers``) go through ``patches_replace["dit"]``: the model keeps its
text-prefix K/V cache across steps only while no block is replaced, so any block replacement
changes its output (no longer bit-identical to the unpatched model) and makes every step run
the text prefix. Whole-model mode leaves that cache on (a pure memo of the prompt's keys and
values: skipping a forward never makes it stale).
"""

from __future__ import annotations

from dataclasses import replace

from . import WHOLE, Family, register
from .image import QWEN_IMAGE

LENS = replace(
    QWEN_IMAGE,
    name="Lens",
    class_names=("LensTransformer2DModel",),
    note="Microsoft Lens: img/txt double-stream blocks; only img feeds the output; "
    "evaluations carrying ControlNet hints or per-block patches are computed",
)

MAGE_FLOW = replace(
    QWEN_IMAGE,
    name="Mage-Flow",
    class_names=("MageFlowTransformer2DModel",),
    note="Qwen-Image blocks with patch size 1 (reference-latent tokens ride in img); only img "
    "feeds the output; evaluations carrying ControlNet hints or per-block patches are computed",
)


def _whole(name: str, class_name: str, note: str, requires: tuple[str, ...] = ()) -> Family:
    return Family(name=name, class_names=(class_name,), mode=WHOLE, is_video=False,
                  requires=requires, note=f"no block replacement: whole-model mode; {note}")


PIXELDIT = _whole("PixelDiT", "PixDiT_T2I", "pixel space; also PiD (PidNet, a subclass)")
OMNIGEN2 = _whole("OmniGen2", "OmniGen2Transformer2DModel", "reference latents ride in the call")
BOOGU = _whole("Boogu", "BooguTransformer2DModel", "OmniGen2-style refiners")
IDEOGRAM4 = _whole("Ideogram 4", "Ideogram4Transformer2DModel", "packed [text, image] sequence")
# the class name is generic: also require Krea 2's text-fusion modules
KREA2 = _whole("Krea 2", "SingleStreamDiT", "single-stream blocks",
               requires=("txtfusion", "txtmlp", "tproj"))
ERNIE_IMAGE = _whole("ERNIE-Image", "ErnieImageModel", "shared-AdaLN blocks")
HIDREAM_O1 = Family(
    name="HiDream-O1",
    class_names=("HiDreamO1Transformer",),
    mode=WHOLE,
    is_video=False,
    note="has block replacement, but replacing any block turns off the model's text-prefix "
    "K/V cache and changes its output: whole-model mode keeps the model as it runs unpatched",
)

register(LENS, MAGE_FLOW, HIDREAM_O1, PIXELDIT, OMNIGEN2, BOOGU, IDEOGRAM4, KREA2, ERNIE_IMAGE)
