"""Video DiT families besides Wan 2.1/2.2 t2v/i2v/VACE (ComfyUI 0.3.75 model code).

Token layouts (what MoReg slices into frames x spatial tokens) were read from each model's
forward; the notes say where the extra tokens sit.
"""

from dataclasses import replace

from . import BLOCKS, WHOLE, Family, register
from .wan import WAN

HUNYUAN_VIDEO = Family(
    name="HunyuanVideo",
    class_names=("HunyuanVideo",),
    mode=BLOCKS,
    # double blocks carry (img, txt); the single blocks see img = cat(img, txt)
    stacks=(("double_blocks", "double_block"), ("single_blocks", "single_block")),
    stream_keys=("img", "txt"),
    joined="img_first",
    patch_size=(1, 2, 2),
    patch_size_attr="patch_size",  # 1.5 uses (1, 1, 1)
    # img = [ref_latent tokens ("custom" i2v) | video tokens]; the runtime cuts the joined
    # [img | txt] single-stream residual to its img part first
    video_tokens="tail",
    note="HunyuanVideo 1 (t2v, i2v v1/v2/custom, SkyReels) and 1.5 (same class); txt (incl. "
    "byt5 / vision tokens) is carried through the stack; also HunyuanImage 2.1 (no frames)",
)

LTXV = Family(
    name="LTX-Video",
    class_names=("LTXVModel",),
    stacks=(("transformer_blocks", "double_block"),),
    patch_size=(1, 1, 1),  # SymmetricPatchifier(1): one token per latent voxel, (f h w)
    video_tokens="head",  # only video tokens (keyframe guides are latent frames too)
    note="context passes unchanged through the blocks; only img is carried",
)

MOCHI = Family(
    name="Mochi",
    class_names=("AsymmDiTJoint",),
    # blocks return (x, y_feat), but y_feat is dropped after the stack: only img is carried
    stacks=(("blocks", "double_block"),),
    patch_size=(1, 2, 2),
    video_tokens="head",
    note="x tokens are (T hp wp); the text stream is not needed after the stack",
)

COSMOS = Family(
    name="Cosmos",
    class_names=("GeneralDIT", "MiniTrainDIT"),
    mode=WHOLE,
    note="Cosmos 1 (GeneralDIT) and predict2 (MiniTrainDIT) have no patches_replace: the "
    "forward is skipped on cached steps and its output residual (output - input) reused; "
    "metric and MoReg on that latent-shaped residual",
)

WAN_CAMERA = replace(
    WAN,
    name="Wan camera",
    class_names=("CameraWanModel",),
    silenced_modules=(),
    note="Wan 2.1/2.2 Fun camera: camera features are added to the patch embedding, before "
    "the stack; layout as Wan (video tokens only)",
)

WAN_S2V = replace(
    WAN,
    name="Wan S2V",
    class_names=("WanModel_S2V",),
    # audio_injector(x, i, ...) runs after every block and returns the updated x (in place)
    silenced_modules=(("audio_injector", "input"),),
    video_tokens="head",  # [video | reference tokens | motion (frame-pack) tokens]
    note="audio injection between blocks is part of the stack residual and skipped on cached "
    "steps; reference and motion tokens are appended after the video tokens",
)

WAN_HUMO = replace(
    WAN,
    name="Wan HuMo",
    class_names=("HumoWanModel",),
    silenced_modules=(),
    video_tokens="head",  # [video | reference tokens]
    note="audio cross-attention lives inside the blocks; reference tokens are appended",
)

WAN_ANIMATE = replace(
    WAN,
    name="Wan Animate",
    class_names=("AnimateWanModel",),
    # x = x + face_adapter.fuser_blocks[i // 5](x, motion_vec) after every 5th block
    silenced_modules=(("face_adapter.fuser_blocks", "addend"),),
    video_tokens="tail",  # [ref_conv tokens | video]
    note="the face adapter's additions between blocks are part of the stack residual and "
    "skipped (added as 0) on cached steps; pose latents enter before the stack",
)

register(HUNYUAN_VIDEO, LTXV, MOCHI, COSMOS, WAN_CAMERA, WAN_S2V, WAN_HUMO, WAN_ANIMATE)
