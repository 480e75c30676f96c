"""Image DiTs: Flux, Chroma, Qwen-Image, SD3 (MMDiT), AuraFlow, HunyuanDiT, Lumina2 / Z-Image,
HiDream, PixArt.

Image models have one frame, so ``is_video=False``: MoReg has no motion term for them (the run
reports that once in its warnings). Block arguments, as read from ComfyUI 0.3.75's block loops:

- Flux / Chroma (flux/model.py, chroma/model.py): ``("double_block", i)`` gets and returns
  ``img``, ``txt``; the model then runs ``img = cat((txt, img), 1)`` and every
  ``("single_block", i)`` gets and returns that joined ``img``. The cached residual spans both
  stacks: ``img`` and ``txt`` residuals are split back out of the last single block's output.
- AuraFlow (aura/mmdit.py): the same shape (``img`` = x, ``txt`` = c with the 8 register
  tokens, then ``img`` = ``cat([c, x])`` for the single layers).
- Qwen-Image (qwen_image/model.py) and SD3 (mmdit.py): double-stream only; the block args are
  ``img`` / ``txt`` (the model maps them to ``hidden_states`` / ``encoder_hidden_states`` and
  ``x`` / ``context``). After the stack only ``img`` feeds the final layer (SD3's last joint
  block even returns ``txt=None``: its context block is ``pre_only``), so only ``img`` is
  carried.
- HunyuanDiT (hydit/models.py): ``("double_block", i)`` gets ``img``, ``txt``, ``vec``, ``pe``
  and ``skip`` and returns ``img``; the long skips from the first half of the blocks to the
  second stay inside the stack (a passed-through block ignores its skip), ``final_layer``
  follows the last block.
- Lumina2 / Z-Image (``NextDiT``), HiDream and PixArt have no ``patches_replace["dit"]``: whole
  model mode (diffusion_model.forward skipped on cached steps, output - input reused).
"""

from dataclasses import replace

from . import WHOLE, Family, register

_JOINED_NOTE = (
    "ControlNet: its residuals are added between blocks, outside block replacement, so "
    "evaluations that carry a ControlNet hint are computed, never reused"
)

FLUX = Family(
    name="Flux",
    class_names=("Flux",),
    stacks=(("double_blocks", "double_block"), ("single_blocks", "single_block")),
    stream_keys=("img", "txt"),
    joined="txt_first",
    is_video=False,
    note="Flux.1 dev/schnell, Kontext (reference-latent tokens ride in img), Flux 2 "
    "(global modulation, same block loop); " + _JOINED_NOTE,
)

CHROMA = replace(
    FLUX,
    name="Chroma",
    class_names=("Chroma", "ChromaRadiance"),
    note="Flux-style block loop; skip_mmdit/skip_dit (empty by default) must not skip block 0; "
    "ChromaRadiance shares Chroma.forward_orig (not tested separately); " + _JOINED_NOTE,
)

QWEN_IMAGE = Family(
    name="Qwen-Image",
    class_names=("QwenImageTransformer2DModel",),
    stacks=(("transformer_blocks", "double_block"),),
    stream_keys=("img",),
    is_video=False,
    note="Qwen-Image and Qwen-Image-Edit (reference-latent tokens ride in img); evaluations "
    "carrying per-block model patches (patches['double_block']) are computed; " + _JOINED_NOTE,
)

SD3 = Family(
    name="SD3 (MMDiT)",
    class_names=("OpenAISignatureMMDITWrapper",),
    stacks=(("joint_blocks", "double_block"),),
    stream_keys=("img",),
    is_video=False,
    note="SD3 / SD3.5; the last joint block returns no context (pre_only), so only x is "
    "carried; " + _JOINED_NOTE,
)

AURA = replace(
    FLUX,  # the same joined layout: double layers carry (img, txt), single layers cat(txt, img)
    name="AuraFlow",
    class_names=("MMDiT",),  # comfy.ldm.aura.mmdit.MMDiT (SD3 is OpenAISignatureMMDITWrapper)
    stacks=(("double_layers", "double_block"), ("single_layers", "single_block")),
    note="needs both double and single layers (every released AuraFlow has them)",
)

HUNYUAN_DIT = Family(
    name="HunyuanDiT",
    class_names=("HunYuanDiT",),
    stacks=(("blocks", "double_block"),),
    is_video=False,
    note="HunyuanDiT (hydit and hydit1 configs): long skips between the halves of the stack "
    "stay inside it; ControlNet (added to the skips) makes an evaluation compute",
)

LUMINA2 = Family(
    name="Lumina2 / Z-Image",
    class_names=("NextDiT",),
    mode=WHOLE,
    is_video=False,
    note="no block replacement in NextDiT: whole-model mode (Z-Image uses the same class)",
)

HIDREAM = Family(
    name="HiDream",
    class_names=("HiDreamImageTransformer2DModel",),
    mode=WHOLE,
    is_video=False,
    note="no block replacement: whole-model mode",
)

PIXART = Family(
    name="PixArt",
    class_names=("PixArtMS",),
    mode=WHOLE,
    is_video=False,
    note="PixArt alpha / sigma; no block replacement: whole-model mode (EPS output)",
)

register(FLUX, CHROMA, QWEN_IMAGE, SD3, AURA, HUNYUAN_DIT, LUMINA2, HIDREAM, PIXART)
