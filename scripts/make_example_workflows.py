"""Writes the example workflows in ``workflows/`` (UI format) and their ``.jpg`` thumbnails.

    .venv/bin/python scripts/make_example_workflows.py

Each workflow follows the official ComfyUI template for its model family (the
``comfyui_workflow_templates`` package: same nodes, settings and model file names) with AdaCache
Apply inserted between the model loader (after ModelSamplingSD3 where the template has it) and
the sampler, a MoReg Settings node on the video models, and a Note explaining the preset.
``tests/test_workflows.py`` checks every file against a real server's ``/object_info``;
``tests/test_example_notes.py`` checks what each Note claims against the pack's behaviour.

File names are the titles ComfyUI's template browser shows: frontend 1.32.9 titles (and
describes) a custom node pack's template by its file name. So names are short human titles
that fit a template card on one line (tests/test_ui_templates.py measures it). The server lists
a pack's files in disk order; web/templates.js puts the demo (``DEMO_TITLE``, written by
``make_demo_workflow.py``) first and the rest by title, which is also where the browser's
"alphabetical" sort puts them.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "workflows"
# Template titles = file names (no extension). Safe in file names on every OS and in URLs:
# letters, digits, spaces, '.', ',', '(', ')' and '-' only.
DEMO_TITLE = "AdaCache demo (runs on CPU)"
DEMO_FILE = f"{DEMO_TITLE}.json"
FRONTEND_VERSION = "1.32.9"  # comfyui_frontend_package of the development host

# Slots of the node types used: inputs (name, type, optional) and outputs (name, type), in the
# order /object_info lists them (checked by tests/test_workflows.py).
SLOTS: dict[str, tuple[list[tuple[str, str, bool]], list[tuple[str, str]]]] = {
    "UNETLoader": ([], [("MODEL", "MODEL")]),
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPLoader": ([], [("CLIP", "CLIP")]),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")]),
    "VAELoader": ([], [("VAE", "VAE")]),
    "CLIPVisionLoader": ([], [("CLIP_VISION", "CLIP_VISION")]),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "ModelSamplingSD3": ([("model", "MODEL", False)], [("MODEL", "MODEL")]),
    "CLIPTextEncode": ([("clip", "CLIP", False)], [("CONDITIONING", "CONDITIONING")]),
    "ConditioningZeroOut": (
        [("conditioning", "CONDITIONING", False)], [("CONDITIONING", "CONDITIONING")]
    ),
    "FluxGuidance": ([("conditioning", "CONDITIONING", False)], [("CONDITIONING", "CONDITIONING")]),
    "CLIPVisionEncode": (
        [("clip_vision", "CLIP_VISION", False), ("image", "IMAGE", False)],
        [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")],
    ),
    "WanImageToVideo": (
        [
            ("positive", "CONDITIONING", False), ("negative", "CONDITIONING", False),
            ("vae", "VAE", False), ("clip_vision_output", "CLIP_VISION_OUTPUT", True),
            ("start_image", "IMAGE", True),
        ],
        [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent", "LATENT")],
    ),
    "Wan22ImageToVideoLatent": (
        [("vae", "VAE", False), ("start_image", "IMAGE", True)], [("LATENT", "LATENT")]
    ),
    "CosmosPredict2ImageToVideoLatent": (
        [("vae", "VAE", False), ("start_image", "IMAGE", True), ("end_image", "IMAGE", True)],
        [("LATENT", "LATENT")],
    ),
    "EmptyHunyuanLatentVideo": ([], [("LATENT", "LATENT")]),
    "EmptyLTXVLatentVideo": ([], [("LATENT", "LATENT")]),
    "EmptyMochiLatentVideo": ([], [("LATENT", "LATENT")]),
    "EmptySD3LatentImage": ([], [("LATENT", "LATENT")]),
    "LTXVConditioning": (
        [("positive", "CONDITIONING", False), ("negative", "CONDITIONING", False)],
        [("positive", "CONDITIONING"), ("negative", "CONDITIONING")],
    ),
    "LTXVScheduler": ([("latent", "LATENT", True)], [("SIGMAS", "SIGMAS")]),
    "KSamplerSelect": ([], [("SAMPLER", "SAMPLER")]),
    "BasicScheduler": ([("model", "MODEL", False)], [("SIGMAS", "SIGMAS")]),
    "BasicGuider": (
        [("model", "MODEL", False), ("conditioning", "CONDITIONING", False)], [("GUIDER", "GUIDER")]
    ),
    "RandomNoise": ([], [("NOISE", "NOISE")]),
    "SamplerCustomAdvanced": (
        [
            ("noise", "NOISE", False), ("guider", "GUIDER", False), ("sampler", "SAMPLER", False),
            ("sigmas", "SIGMAS", False), ("latent_image", "LATENT", False),
        ],
        [("output", "LATENT"), ("denoised_output", "LATENT")],
    ),
    "SamplerCustom": (
        [
            ("model", "MODEL", False), ("positive", "CONDITIONING", False),
            ("negative", "CONDITIONING", False), ("sampler", "SAMPLER", False),
            ("sigmas", "SIGMAS", False), ("latent_image", "LATENT", False),
        ],
        [("output", "LATENT"), ("denoised_output", "LATENT")],
    ),
    "KSampler": (
        [
            ("model", "MODEL", False), ("positive", "CONDITIONING", False),
            ("negative", "CONDITIONING", False), ("latent_image", "LATENT", False),
        ],
        [("LATENT", "LATENT")],
    ),
    "VAEDecode": ([("samples", "LATENT", False), ("vae", "VAE", False)], [("IMAGE", "IMAGE")]),
    "VAEDecodeTiled": (
        [("samples", "LATENT", False), ("vae", "VAE", False)], [("IMAGE", "IMAGE")]
    ),
    "CreateVideo": ([("images", "IMAGE", False), ("audio", "AUDIO", True)], [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO", False)], []),
    "SaveImage": ([("images", "IMAGE", False)], []),
    "Note": ([], []),
    "AdaCacheApply": (
        [
            ("model", "MODEL", False), ("codebook", "ADACACHE_CODEBOOK", True),
            ("moreg", "ADACACHE_MOREG", True),
        ],
        [("MODEL", "MODEL")],
    ),
    "AdaCacheCodebookEditor": ([], [("ADACACHE_CODEBOOK", "ADACACHE_CODEBOOK")]),
    "AdaCacheMoRegSettings": ([], [("ADACACHE_MOREG", "ADACACHE_MOREG")]),
}
KSamplerAdvanced = "KSamplerAdvanced"
SLOTS[KSamplerAdvanced] = SLOTS["KSampler"]

# Sizes as frontend 1.32.9 lays the nodes out (measured after load: widgets and the AdaCache
# plot need this room; a smaller saved size grows on load and overlaps its neighbours).
SIZES = {
    "UNETLoader": (350, 82), "CheckpointLoaderSimple": (350, 98), "CLIPLoader": (350, 106),
    "DualCLIPLoader": (350, 130), "VAELoader": (350, 58), "CLIPVisionLoader": (350, 58),
    "LoadImage": (440, 326), "ModelSamplingSD3": (250, 58), "CLIPTextEncode": (420, 160),
    "AdaCacheApply": (460, 540), "AdaCacheMoRegSettings": (320, 250),
    "AdaCacheCodebookEditor": (320, 160), "KSampler": (320, 262), "KSamplerAdvanced": (320, 334),
    "SamplerCustom": (320, 230), "SamplerCustomAdvanced": (270, 106), "Note": (360, 200),
    "VAEDecode": (210, 46), "VAEDecodeTiled": (270, 150), "CreateVideo": (270, 78),
    "SaveVideo": (420, 420), "SaveImage": (420, 420),
    "CosmosPredict2ImageToVideoLatent": (300, 170),
    "EmptyHunyuanLatentVideo": (300, 130), "EmptyLTXVLatentVideo": (300, 130),
    "EmptyMochiLatentVideo": (300, 130), "LTXVScheduler": (300, 154),
    "Wan22ImageToVideoLatent": (300, 150), "WanImageToVideo": (300, 210),
}
TITLE_H = 30  # LiteGraph.NODE_TITLE_HEIGHT: drawn above ``pos``
GAP = 24  # free space kept between nodes
# Where the frontend's "missing models" dialog downloads each file from (as in the templates).
MODEL_URLS = {
    "wan2.1_t2v_1.3B_fp16.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
    "wan2.1_i2v_480p_14B_fp16.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "wan_2.1_vae.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/wan_2.1_vae.safetensors",
    "clip_vision_h.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/clip_vision/clip_vision_h.safetensors",
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
    "wan2.2_ti2v_5B_fp16.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
    "wan2.2_vae.safetensors": "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors",
    "hunyuan_video_t2v_720p_bf16.safetensors": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors",
    "hunyuan_video_vae_bf16.safetensors": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files/vae/hunyuan_video_vae_bf16.safetensors",
    "llava_llama3_fp8_scaled.safetensors": "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files/text_encoders/llava_llama3_fp8_scaled.safetensors",
    "clip_l.safetensors": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
    "t5xxl_fp16.safetensors": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
    "ltx-video-2b-v0.9.safetensors": "https://huggingface.co/Lightricks/LTX-Video/resolve/main/ltx-video-2b-v0.9.safetensors",
    "mochi_preview_bf16.safetensors": "https://huggingface.co/Comfy-Org/mochi_preview_repackaged/resolve/main/split_files/diffusion_models/mochi_preview_bf16.safetensors",
    "mochi_vae.safetensors": "https://huggingface.co/Comfy-Org/mochi_preview_repackaged/resolve/main/split_files/vae/mochi_vae.safetensors",
    "cosmos_predict2_2B_video2world_480p_16fps.safetensors": "https://huggingface.co/Comfy-Org/Cosmos_Predict2_repackaged/resolve/main/cosmos_predict2_2B_video2world_480p_16fps.safetensors",
    "oldt5_xxl_fp8_e4m3fn_scaled.safetensors": "https://huggingface.co/comfyanonymous/cosmos_1.0_text_encoder_and_VAE_ComfyUI/resolve/main/text_encoders/oldt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "flux1-dev.safetensors": "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors",
    "ae.safetensors": "https://huggingface.co/Comfy-Org/HiDream-I1_ComfyUI/resolve/main/split_files/vae/ae.safetensors",
}
MODEL_DIRS = {
    "UNETLoader": "diffusion_models", "CheckpointLoaderSimple": "checkpoints",
    "CLIPLoader": "text_encoders", "DualCLIPLoader": "text_encoders", "VAELoader": "vae",
    "CLIPVisionLoader": "clip_vision",
}

WAN_NEGATIVE = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
FOX = (
    "a fox moving quickly in a beautiful winter scenery nature trees mountains daytime "
    "tracking camera"
)
APPLY_DEFAULTS = {"metric": "l1", "metric_blocks": "middle", "start": 0.0, "end": 1.0}
MOREG_DEFAULTS = [True, "1", 0.385, 8.0, 1.0, 10.0, 0.1, 0.9]
POSITIVE = {"color": "#232", "bgcolor": "#353"}
NEGATIVE = {"color": "#322", "bgcolor": "#533"}
ADACACHE = {"color": "#223", "bgcolor": "#335"}
NOTE = {"color": "#432", "bgcolor": "#653"}


class Graph:
    """A UI-format workflow under construction."""

    def __init__(self):
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.by_id: dict[int, dict] = {}
        self.groups: list[dict] = []

    def add(self, type_: str, pos, widgets: list, *, title=None, mode=0, colors=None, size=None):
        node_id = len(self.nodes) + 1
        inputs, outputs = SLOTS[type_]
        node = {
            "id": node_id,
            "type": type_,
            "pos": list(pos),
            "size": list(size or SIZES.get(type_, (300, 110))),
            "flags": {},
            "order": 0,
            "mode": mode,
            "inputs": [
                {"name": n, "type": t, "link": None, **({"shape": 7} if opt else {})}
                for n, t, opt in inputs
            ],
            "outputs": [
                {"name": n, "type": t, "slot_index": i, "links": []}
                for i, (n, t) in enumerate(outputs)
            ],
            "properties": {} if type_ == "Note" else {"Node name for S&R": type_},
            "widgets_values": widgets,
        }
        if title:
            node["title"] = title
        if colors:
            node.update(colors)
        if type_ in MODEL_DIRS:
            files = [w for w in widgets if isinstance(w, str) and w in MODEL_URLS]
            if files:  # the demo model ships with the pack: nothing to download
                node["properties"]["models"] = [
                    {"name": f, "url": MODEL_URLS[f], "directory": MODEL_DIRS[type_]}
                    for f in files
                ]
        self.nodes.append(node)
        self.by_id[node_id] = node
        return node_id

    def link(self, src: int, src_slot: int, dst: int, dst_input: str) -> None:
        link_id = len(self.links) + 1
        out = self.by_id[src]["outputs"][src_slot]
        inputs = self.by_id[dst]["inputs"]
        slot = next(i for i, inp in enumerate(inputs) if inp["name"] == dst_input)
        assert inputs[slot]["link"] is None, (dst, dst_input)
        assert inputs[slot]["type"] == out["type"], (src, dst, dst_input)
        inputs[slot]["link"] = link_id
        out["links"].append(link_id)
        self.links.append([link_id, src, src_slot, dst, slot, out["type"]])

    def group(self, title: str, bounding) -> None:
        self.groups.append({
            "id": len(self.groups) + 1, "title": title, "bounding": list(bounding),
            "color": "#3f789e", "font_size": 24, "flags": {},
        })

    def resolve_overlaps(self) -> None:
        """Moves nodes until no two rectangles (title bar included) come closer than GAP.

        Nodes are taken in reading order (top to bottom, then left to right). Of two that
        overlap, the one further right moves right together with every node at or beyond its
        x (columns stay aligned); two in the same column: the lower one moves down.
        """
        placed: list[dict] = []
        for node in sorted(self.nodes, key=lambda n: (n["pos"][1], n["pos"][0])):
            while other := next((o for o in placed if _overlap(node, o)), None):
                left, right = sorted((other, node), key=lambda n: n["pos"][0])
                if left["pos"][0] == right["pos"][0]:
                    node["pos"][1] = other["pos"][1] + other["size"][1] + TITLE_H + GAP
                    continue
                column = right["pos"][0]
                dx = left["pos"][0] + left["size"][0] + GAP - column
                for n in self.nodes:
                    if n["pos"][0] >= column:
                        n["pos"][0] += dx
            placed.append(node)

    def to_json(self, info: str) -> dict:
        self.resolve_overlaps()
        # Execution order: a topological order of the graph (what the frontend saves).
        preds = {n["id"]: {link[1] for link in self.links if link[3] == n["id"]}
                 for n in self.nodes}
        done: list[int] = []
        while len(done) < len(self.nodes):
            ready = [i for i in preds if i not in done and preds[i] <= set(done)]
            done.extend(sorted(ready))
        for order, node_id in enumerate(done):
            self.by_id[node_id]["order"] = order
        for node in self.nodes:
            for out in node["outputs"]:
                if not out["links"]:
                    out["links"] = None if node["type"] != "Note" else []
        return {
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": self.groups,
            "config": {},
            "extra": {
                "ds": {"scale": 0.65, "offset": [60, 120]},
                "frontendVersion": FRONTEND_VERSION,
                "info": info,
            },
            "version": 0.4,
        }


def _overlap(a: dict, b: dict) -> bool:
    ax, ay = a["pos"][0], a["pos"][1] - TITLE_H
    bx, by = b["pos"][0], b["pos"][1] - TITLE_H
    aw, ah = a["size"][0], a["size"][1] + TITLE_H
    bw, bh = b["size"][0], b["size"][1] + TITLE_H
    return (ax < bx + bw + GAP and bx < ax + aw + GAP
            and ay < by + bh + GAP and by < ay + ah + GAP)


# --- building blocks ------------------------------------------------------------------------


def adacache(g: Graph, pos, model_src: tuple[int, int], preset: str, *, moreg=None,
             codebook=None, title=None, start=0.0, end=1.0) -> int:
    node = g.add(
        "AdaCacheApply", pos,
        [preset, APPLY_DEFAULTS["metric"], APPLY_DEFAULTS["metric_blocks"], start, end, False,
         False],
        title=title, colors=ADACACHE,
    )
    g.link(*model_src, node, "model")
    if moreg is not None:
        g.link(moreg, 0, node, "moreg")
    if codebook is not None:
        g.link(codebook, 0, node, "codebook")
    return node


def moreg_settings(g: Graph, pos, values=None) -> int:
    return g.add("AdaCacheMoRegSettings", pos, list(values or MOREG_DEFAULTS), colors=ADACACHE)


# Frontend 1.32.9 draws a Note's text in a ~10 px monospace font (about 6.2 px a character,
# 11 px a line); sized with wider characters and taller lines than that, a Note shows all of
# its text without scrolling on other systems' monospace fonts too (tests/test_ui_examples.py
# measures it in the real frontend).
NOTE_CHAR_W, NOTE_LINE_H, NOTE_PAD = 7.0, 12.5, 24


def note_height(text: str, width: int) -> int:
    per_line = int((width - NOTE_PAD) / NOTE_CHAR_W)
    lines = sum(len(textwrap.wrap(par, per_line)) or 1 for par in text.split("\n"))
    return int(math.ceil(lines * NOTE_LINE_H + NOTE_PAD))


def note(g: Graph, pos, text: str, title="About the AdaCache preset", width=360) -> int:
    return g.add("Note", pos, [text], title=title, colors=NOTE,
                 size=(width, note_height(text, width)))


def text_encoders(g: Graph, clip: tuple[int, int], pos_xy, positive: str, negative: str):
    x, y = pos_xy
    p = g.add("CLIPTextEncode", (x, y), [positive], title="CLIP Text Encode (Positive Prompt)",
              colors=POSITIVE)
    n = g.add("CLIPTextEncode", (x, y + 210), [negative],
              title="CLIP Text Encode (Negative Prompt)", colors=NEGATIVE)
    g.link(*clip, p, "clip")
    g.link(*clip, n, "clip")
    return p, n


def decode_and_save(g: Graph, samples: tuple[int, int], vae: tuple[int, int], pos_xy, fps,
                    *, tiled: list | None = None) -> None:
    x, y = pos_xy
    if tiled is not None:
        dec = g.add("VAEDecodeTiled", (x, y), tiled)
    else:
        dec = g.add("VAEDecode", (x, y), [])
    vid = g.add("CreateVideo", (x, y + 180), [fps])
    save = g.add("SaveVideo", (x, y + 300), ["video/AdaCache", "auto", "auto"])
    g.link(*samples, dec, "samples")
    g.link(*vae, dec, "vae")
    g.link(dec, 0, vid, "images")
    g.link(vid, 0, save, "video")


def loader(g: Graph, type_: str, pos, widgets: list) -> int:
    return g.add(type_, pos, widgets)


PRESETS_TEXT = (
    "Presets (scaled to your step count): fast = most reuse (the paper's AdaCache-fast at 30 "
    "steps), medium = in between, slow = closest to the uncached video. A connected codebook "
    "(Codebook Editor or AdaCache Calibrate) is used whatever the preset, except 'calibrate'; "
    "the log says it replaced the preset."
)
VERBOSE_TEXT = (
    "Turn on 'verbose' on AdaCache Apply to log, per step, whether the block stack was "
    "computed or reused and the chosen cache rate."
)


def preset_note(family: str, preset: str, why: str, extra: str = "") -> str:
    return (
        f"AdaCache on {family}: preset {preset if ' ' in preset else repr(preset)}.\n\n"
        f"{why}\n\n{PRESETS_TEXT}\n\n"
        + VERBOSE_TEXT + (f"\n\n{extra}" if extra else "")
    )


MOREG_TEXT = (
    "MoReg Settings: recompute more often when the video moves fast (motion measured from frame "
    "differences of the cached features). Set 'enabled' to false or disconnect it to compare."
)

# --- workflows ------------------------------------------------------------------------------


def wan21_t2v() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0), ["wan2.1_t2v_1.3B_fp16.safetensors", "default"])
    clip = loader(g, "CLIPLoader", (0, 130),
                  ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"])
    vae = loader(g, "VAELoader", (0, 280), ["wan_2.1_vae.safetensors"])
    latent = g.add("EmptyHunyuanLatentVideo", (0, 390), [832, 480, 33, 1])
    shift = g.add("ModelSamplingSD3", (400, -120), [8])
    g.link(unet, 0, shift, "model")
    codebook = g.add("AdaCacheCodebookEditor", (400, 0),
                     ["0.08, 0.16, 0.24, 0.32, 0.4, 1", "5, 4, 3, 2, 2, 1",
                      "(use the values above)"], colors=ADACACHE)
    moreg = moreg_settings(g, (400, 120))
    apply = adacache(g, (760, -120), (shift, 0), "custom", moreg=moreg, codebook=codebook)
    pos, neg = text_encoders(g, (clip, 0), (400, 420), FOX, WAN_NEGATIVE)
    ks = g.add("KSampler", (860, 160), [82628696717253, "randomize", 30, 6, "uni_pc", "simple", 1])
    g.link(apply, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    decode_and_save(g, (ks, 0), (vae, 0), (1230, -120), 16)
    note(g, (0, 560), preset_note(
        "Wan 2.1 T2V 1.3B", "custom",
        "This example uses a custom codebook (Codebook Editor). A custom codebook is used as "
        "typed, not scaled to the step count: these values are for this example's 30 steps. "
        "A distance below 0.08 runs the block stack again 5 steps later (the 4 steps between "
        "reuse it), below 0.16 after 4 steps, ..., and a distance of 0.4 or more runs it "
        "every step. The rates lie between the 'medium' (4, 3, 2, 2, 1, 1) and 'fast' (6, 5, "
        "4, 3, 2, 1) presets at 30 steps. To use a preset instead, disconnect the Codebook "
        "Editor and pick 'fast', 'medium' or 'slow': while a codebook is connected, it is used "
        "whatever the preset says.", MOREG_TEXT))
    return g


def wan21_i2v() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0), ["wan2.1_i2v_480p_14B_fp16.safetensors", "default"])
    clip = loader(g, "CLIPLoader", (0, 130),
                  ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"])
    vae = loader(g, "VAELoader", (0, 280), ["wan_2.1_vae.safetensors"])
    vision = loader(g, "CLIPVisionLoader", (0, 380), ["clip_vision_h.safetensors"])
    image = g.add("LoadImage", (0, 480), ["example.png", "image"])
    shift = g.add("ModelSamplingSD3", (400, -120), [8])
    g.link(unet, 0, shift, "model")
    moreg = moreg_settings(g, (400, 0))
    apply = adacache(g, (760, -120), (shift, 0), "fast", moreg=moreg)
    pos, neg = text_encoders(
        g, (clip, 0), (400, 300),
        "a cute anime girl with massive fennec ears and a big fluffy tail wearing a maid outfit "
        "turning around", WAN_NEGATIVE)
    enc = g.add("CLIPVisionEncode", (400, 720), ["none"])
    g.link(vision, 0, enc, "clip_vision")
    g.link(image, 0, enc, "image")
    i2v = g.add("WanImageToVideo", (860, 420), [512, 512, 33, 1])
    g.link(pos, 0, i2v, "positive")
    g.link(neg, 0, i2v, "negative")
    g.link(vae, 0, i2v, "vae")
    g.link(enc, 0, i2v, "clip_vision_output")
    g.link(image, 0, i2v, "start_image")
    ks = g.add("KSampler", (860, 120), [987948718394761, "randomize", 20, 6, "uni_pc", "simple", 1])
    g.link(apply, 0, ks, "model")
    g.link(i2v, 0, ks, "positive")
    g.link(i2v, 1, ks, "negative")
    g.link(i2v, 2, ks, "latent_image")
    decode_and_save(g, (ks, 0), (vae, 0), (1230, -120), 16)
    note(g, (1230, 620), preset_note(
        "Wan 2.1 I2V 480p 14B", "fast",
        "Image-to-video keeps the first frame fixed, so most of the video's content is decided "
        "early; 'fast' reuses the most. At 20 steps the preset is scaled from the paper's "
        "30-step codebook to higher thresholds and lower rates (fast at 20 steps: rates 4, 3, "
        "3, 2, 1, 1). If fine detail drifts, try 'medium'.", MOREG_TEXT))
    return g


def wan22_14b_two_expert() -> Graph:
    g = Graph()
    high = loader(g, "UNETLoader", (0, 0),
                  ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "default"])
    low = loader(g, "UNETLoader", (0, 130),
                 ["wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "default"])
    clip = loader(g, "CLIPLoader", (0, 260),
                  ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"])
    vae = loader(g, "VAELoader", (0, 410), ["wan_2.1_vae.safetensors"])
    latent = g.add("EmptyHunyuanLatentVideo", (0, 510), [640, 640, 81, 1])
    shift_hi = g.add("ModelSamplingSD3", (400, -120), [8], title="ModelSamplingSD3 (high noise)")
    shift_lo = g.add("ModelSamplingSD3", (400, 0), [8], title="ModelSamplingSD3 (low noise)")
    g.link(high, 0, shift_hi, "model")
    g.link(low, 0, shift_lo, "model")
    moreg = moreg_settings(g, (400, 120))
    apply_hi = adacache(g, (760, -360), (shift_hi, 0), "medium", moreg=moreg,
                        title="AdaCache Apply (high-noise expert)")
    apply_lo = adacache(g, (760, -100), (shift_lo, 0), "fast", moreg=moreg,
                        title="AdaCache Apply (low-noise expert)")
    pos, neg = text_encoders(
        g, (clip, 0), (400, 400),
        "Beautiful young European woman with honey blonde hair gracefully turning her head back "
        "over shoulder, gentle smile, bright eyes looking at camera. Hair flowing in slow motion "
        "as she turns. Soft natural lighting, clean background, cinematic portrait.",
        WAN_NEGATIVE)
    k_hi = g.add("KSamplerAdvanced", (1120, -360),
                 ["enable", 864031777124281, "randomize", 20, 3.5, "euler", "simple", 0, 10,
                  "enable"], title="KSamplerAdvanced (high noise, steps 0-10)")
    k_lo = g.add("KSamplerAdvanced", (1120, 20),
                 ["disable", 0, "fixed", 20, 3.5, "euler", "simple", 10, 10000, "disable"],
                 title="KSamplerAdvanced (low noise, steps 10-20)")
    g.link(apply_hi, 0, k_hi, "model")
    g.link(pos, 0, k_hi, "positive")
    g.link(neg, 0, k_hi, "negative")
    g.link(latent, 0, k_hi, "latent_image")
    g.link(apply_lo, 0, k_lo, "model")
    g.link(pos, 0, k_lo, "positive")
    g.link(neg, 0, k_lo, "negative")
    g.link(k_hi, 0, k_lo, "latent_image")
    decode_and_save(g, (k_lo, 0), (vae, 0), (1480, -360), 16)
    note(g, (0, 680), preset_note(
        "Wan 2.2 T2V 14B (two experts)", "'medium' on the high-noise expert, 'fast' on the "
        "low-noise expert",
        "Each expert is its own model and gets its own AdaCache Apply; each sampler runs only "
        "its part of the schedule (steps 0-10 and 10-20 here), and each preset is sized for "
        "the whole 20-step schedule, not for the 10 steps its expert sees. The "
        "high-noise expert lays out composition and motion, where reuse costs the most quality, "
        "so it gets 'medium'; the low-noise expert refines detail on an already formed video "
        "and tolerates 'fast'. One MoReg Settings node feeds both.", MOREG_TEXT),
        width=380)
    return g


def wan22_5b() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0), ["wan2.2_ti2v_5B_fp16.safetensors", "default"])
    clip = loader(g, "CLIPLoader", (0, 130),
                  ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"])
    vae = loader(g, "VAELoader", (0, 280), ["wan2.2_vae.safetensors"])
    image = g.add("LoadImage", (0, 380), ["example.png", "image"], mode=4,
                  title="Start frame (optional: un-bypass)")
    shift = g.add("ModelSamplingSD3", (400, -120), [8])
    g.link(unet, 0, shift, "model")
    moreg = moreg_settings(g, (400, 0))
    apply = adacache(g, (760, -120), (shift, 0), "fast", moreg=moreg)
    pos, neg = text_encoders(
        g, (clip, 0), (400, 300),
        "Low contrast. In a retro 1970s-style subway station, a street musician plays in dim "
        "colors and rough textures. He wears an old jacket, playing guitar with focus. "
        "Commuters hurry by, and a small crowd gathers to listen.", WAN_NEGATIVE)
    latent = g.add("Wan22ImageToVideoLatent", (860, 420), [1280, 704, 121, 1])
    g.link(vae, 0, latent, "vae")
    g.link(image, 0, latent, "start_image")
    ks = g.add("KSampler", (860, 120), [898471028164125, "randomize", 20, 5, "uni_pc", "simple", 1])
    g.link(apply, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    decode_and_save(g, (ks, 0), (vae, 0), (1230, -120), 24)
    note(g, (1230, 620), preset_note(
        "Wan 2.2 TI2V 5B (48-channel latent, Wan22ImageToVideoLatent)", "fast",
        "The 5B model makes long 720p videos (121 frames), where the block stack dominates the "
        "run time, so 'fast' saves the most. The latent has 48 channels and a 16x spatial "
        "compression; AdaCache only looks at the transformer's tokens, so nothing changes for "
        "it. Text-to-video as saved; un-bypass Load Image (Ctrl+B) for image-to-video.",
        MOREG_TEXT))
    return g


def hunyuan_video() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0), ["hunyuan_video_t2v_720p_bf16.safetensors", "default"])
    clip = loader(g, "DualCLIPLoader", (0, 130),
                  ["clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors", "hunyuan_video",
                   "default"])
    vae = loader(g, "VAELoader", (0, 300), ["hunyuan_video_vae_bf16.safetensors"])
    latent = g.add("EmptyHunyuanLatentVideo", (0, 400), [848, 480, 73, 1])
    shift = g.add("ModelSamplingSD3", (400, -120), [7])
    g.link(unet, 0, shift, "model")
    moreg = moreg_settings(g, (400, 0))
    apply = adacache(g, (760, -120), (shift, 0), "fast", moreg=moreg)
    text = g.add("CLIPTextEncode", (400, 300), [
        "anime style anime girl with massive fennec ears and one big fluffy tail, she has blonde "
        "hair long hair blue eyes wearing a pink sweater and a long blue skirt walking in a "
        "beautiful outdoor scenery with snow mountains in the background"],
        title="CLIP Text Encode (Positive Prompt)", colors=POSITIVE)
    g.link(clip, 0, text, "clip")
    guidance = g.add("FluxGuidance", (400, 520), [6])
    g.link(text, 0, guidance, "conditioning")
    guider = g.add("BasicGuider", (1120, -120), [])
    g.link(apply, 0, guider, "model")
    g.link(guidance, 0, guider, "conditioning")
    sched = g.add("BasicScheduler", (1120, 0), ["simple", 20, 1])
    g.link(unet, 0, sched, "model")
    sampler = g.add("KSamplerSelect", (1120, 140), ["euler"])
    noise = g.add("RandomNoise", (1120, 240), [1, "randomize"])
    sca = g.add("SamplerCustomAdvanced", (1120, 360), [])
    g.link(noise, 0, sca, "noise")
    g.link(guider, 0, sca, "guider")
    g.link(sampler, 0, sca, "sampler")
    g.link(sched, 0, sca, "sigmas")
    g.link(latent, 0, sca, "latent_image")
    decode_and_save(g, (sca, 0), (vae, 0), (1480, -120), 24, tiled=[256, 64, 64, 8])
    note(g, (0, 560), preset_note(
        "HunyuanVideo T2V 720p", "fast",
        "HunyuanVideo runs a double-stream and a single-stream block stack; AdaCache caches the "
        "residual across both (text tokens included) and takes motion from the video tokens "
        "only. Guidance is distilled (one model call per step, FluxGuidance), so every reused "
        "step saves a whole call: 'fast' at 20 steps.", MOREG_TEXT))
    return g


def ltxv() -> Graph:
    g = Graph()
    ckpt = loader(g, "CheckpointLoaderSimple", (0, 0), ["ltx-video-2b-v0.9.safetensors"])
    clip = loader(g, "CLIPLoader", (0, 140), ["t5xxl_fp16.safetensors", "ltxv", "default"])
    latent = g.add("EmptyLTXVLatentVideo", (0, 290), [768, 512, 97, 1])
    moreg = moreg_settings(g, (400, 0))
    apply = adacache(g, (400, -260), (ckpt, 0), "medium", moreg=moreg)
    pos, neg = text_encoders(
        g, (clip, 0), (400, 300),
        "A woman with long brown hair and light skin smiles at another woman with long blonde "
        "hair. The woman with brown hair wears a black jacket and has a small, barely noticeable "
        "mole on her right cheek. The camera angle is a close-up, focused on the woman with "
        "brown hair's face. The lighting is warm and natural, likely from the setting sun, "
        "casting a soft glow on the scene. The scene appears to be real-life footage.",
        "low quality, worst quality, deformed, distorted, disfigured, motion smear, motion "
        "artifacts, fused fingers, bad anatomy, weird hand, ugly")
    cond = g.add("LTXVConditioning", (860, 300), [25])
    g.link(pos, 0, cond, "positive")
    g.link(neg, 0, cond, "negative")
    sched = g.add("LTXVScheduler", (860, 420), [30, 2.05, 0.95, True, 0.1])
    g.link(latent, 0, sched, "latent")
    sampler = g.add("KSamplerSelect", (860, 600), ["euler"])
    sc = g.add("SamplerCustom", (860, -260), [True, 497797676867141, "randomize", 3])
    g.link(apply, 0, sc, "model")
    g.link(cond, 0, sc, "positive")
    g.link(cond, 1, sc, "negative")
    g.link(sampler, 0, sc, "sampler")
    g.link(sched, 0, sc, "sigmas")
    g.link(latent, 0, sc, "latent_image")
    decode_and_save(g, (sc, 0), (ckpt, 2), (1230, -260), 24)
    note(g, (0, 450), preset_note(
        "LTX-Video 2B", "medium",
        "LTX-Video is already fast (a high-compression VAE, few tokens per frame), so there is "
        "less to save and each reused step matters more for quality: 'medium' at 30 steps. "
        "Try 'fast' for previews.", MOREG_TEXT))
    return g


def mochi() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0), ["mochi_preview_bf16.safetensors", "default"])
    clip = loader(g, "CLIPLoader", (0, 130), ["t5xxl_fp16.safetensors", "mochi", "default"])
    vae = loader(g, "VAELoader", (0, 280), ["mochi_vae.safetensors"])
    latent = g.add("EmptyMochiLatentVideo", (0, 380), [848, 480, 37, 1])
    moreg = moreg_settings(g, (400, 0))
    apply = adacache(g, (400, -260), (unet, 0), "fast", moreg=moreg)
    pos, neg = text_encoders(
        g, (clip, 0), (400, 300),
        "a fox moving quickly in a beautiful winter scenery nature trees sunset tracking camera",
        "")
    ks = g.add("KSampler", (860, -260),
               [704883238463297, "randomize", 30, 4.5, "euler", "simple", 1])
    g.link(apply, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    decode_and_save(g, (ks, 0), (vae, 0), (1230, -260), 24)
    note(g, (0, 540), preset_note(
        "Mochi preview", "fast",
        "Mochi is a large asymmetric DiT (10B) where the block stack is nearly all of the run "
        "time; at 30 steps 'fast' is the paper's AdaCache-fast codebook exactly.", MOREG_TEXT))
    return g


def cosmos_predict2() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0),
                  ["cosmos_predict2_2B_video2world_480p_16fps.safetensors", "default"])
    clip = loader(g, "CLIPLoader", (0, 130),
                  ["oldt5_xxl_fp8_e4m3fn_scaled.safetensors", "cosmos", "default"])
    vae = loader(g, "VAELoader", (0, 280), ["wan_2.1_vae.safetensors"])
    image = g.add("LoadImage", (0, 380), ["example.png", "image"], title="Load Image (start frame)")
    moreg = moreg_settings(g, (400, 0))
    apply = adacache(g, (400, -260), (unet, 0), "medium", moreg=moreg)
    pos, neg = text_encoders(
        g, (clip, 0), (400, 300),
        "A nighttime city bus terminal gradually shifts from stillness to subtle movement. A "
        "central bus moves ahead slowly, its headlights brightening the surrounding area and "
        "casting reflections onto adjacent vehicles.",
        "The video captures a series of frames showing ugly scenes, static with no motion, "
        "motion blur, over-saturation, shaky footage, low resolution, grainy texture, pixelated "
        "images, poorly lit areas, underexposed and overexposed scenes, poor color balance, "
        "washed out colors, choppy sequences, jerky movements, low frame rate, artifacting, "
        "color banding, unnatural transitions, outdated special effects, fake elements, "
        "unconvincing visuals, poorly edited content, jump cuts, visual noise, and flickering.")
    latent = g.add("CosmosPredict2ImageToVideoLatent", (860, 420), [848, 480, 93, 1])
    g.link(vae, 0, latent, "vae")
    g.link(image, 0, latent, "start_image")
    ks = g.add("KSampler", (860, -260),
               [788533681999051, "randomize", 35, 7, "euler", "simple", 1])
    g.link(apply, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    decode_and_save(g, (ks, 0), (vae, 0), (1230, -260), 16)
    note(g, (1230, 420), preset_note(
        "Cosmos Predict2 2B Video2World", "medium",
        "Cosmos predict2 offers no per-block replacement in ComfyUI, so AdaCache uses its "
        "whole-model mode: a reused step skips the diffusion model's forward and reuses its "
        "output residual, with the distance taken on the output. That is coarser than caching "
        "the block stack, hence 'medium'.", MOREG_TEXT))
    return g


def flux() -> Graph:
    g = Graph()
    unet = loader(g, "UNETLoader", (0, 0), ["flux1-dev.safetensors", "default"])
    clip = loader(g, "DualCLIPLoader", (0, 130),
                  ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"])
    vae = loader(g, "VAELoader", (0, 300), ["ae.safetensors"])
    latent = g.add("EmptySD3LatentImage", (0, 400), [1024, 1024, 1])
    apply = adacache(g, (400, -260), (unet, 0), "slow")
    text = g.add("CLIPTextEncode", (400, 20), [
        "cute anime girl with massive fluffy fennec ears and a big fluffy tail blonde messy long "
        "hair blue eyes wearing a maid outfit with a long black gold leaf pattern dress"],
        title="CLIP Text Encode (Positive Prompt)", colors=POSITIVE)
    g.link(clip, 0, text, "clip")
    guidance = g.add("FluxGuidance", (400, 240), [3.5])
    g.link(text, 0, guidance, "conditioning")
    zero = g.add("ConditioningZeroOut", (400, 340), [])
    g.link(text, 0, zero, "conditioning")
    ks = g.add("KSampler", (860, -260),
               [972054013131368, "randomize", 20, 1, "euler", "simple", 1])
    g.link(apply, 0, ks, "model")
    g.link(guidance, 0, ks, "positive")
    g.link(zero, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    dec = g.add("VAEDecode", (1230, -260), [])
    save = g.add("SaveImage", (1230, -160), ["AdaCache/flux"])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    g.link(dec, 0, save, "images")
    note(g, (0, 540), preset_note(
        "Flux.1 dev (text to image)", "slow",
        "An image has one frame, so MoReg has no motion to measure: this example has no MoReg "
        "Settings node (connected to an image model, it changes nothing and AdaCache warns "
        "that its factor stays 1). A still image shows every detail at once, so 'slow' keeps "
        "it closest to the uncached result; 'medium' or 'fast' give quick drafts."))
    return g


# template title (= file name) -> (thumbnail title, builder, thumbnail chain, thumbnail subtitle)
WORKFLOWS = {
    "Wan 2.1 text to video 1.3B": (
        "Wan 2.1 T2V 1.3B", wan21_t2v, ["UNET", "Shift", "AdaCache", "KSampler"],
        "custom codebook"),
    "Wan 2.1 image to video 14B": (
        "Wan 2.1 I2V 480p 14B", wan21_i2v, ["UNET", "Shift", "AdaCache", "KSampler"],
        "fast + MoReg"),
    "Wan 2.2 14B, two experts": (
        "Wan 2.2 T2V 14B two experts", wan22_14b_two_expert,
        ["2 experts", "Shift x2", "AdaCache x2", "KSamplerAdv x2"], "medium / fast + MoReg"),
    "Wan 2.2 TI2V 5B": (
        "Wan 2.2 TI2V 5B", wan22_5b, ["UNET", "Shift", "AdaCache", "KSampler"], "fast + MoReg"),
    "HunyuanVideo text to video": (
        "HunyuanVideo T2V", hunyuan_video, ["UNET", "Shift", "AdaCache", "Guider"],
        "fast + MoReg"),
    "LTX-Video text to video": (
        "LTX-Video T2V", ltxv, ["Checkpoint", "AdaCache", "SamplerCustom"], "medium + MoReg"),
    "Mochi text to video": (
        "Mochi T2V", mochi, ["UNET", "AdaCache", "KSampler"], "fast + MoReg"),
    "Cosmos Predict2 image to video": (
        "Cosmos Predict2 Video2World", cosmos_predict2, ["UNET", "AdaCache", "KSampler"],
        "medium + MoReg"),
    "Flux.1 dev text to image": (
        "Flux.1 dev T2I", flux, ["UNET", "AdaCache", "KSampler"], "slow"),
}
TEMPLATE_TITLES = [DEMO_TITLE, *WORKFLOWS]  # every template, the demo first


# --- thumbnails -----------------------------------------------------------------------------


def _font(size: int, bold: bool = False):
    names = ["DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"]
    for name in names:
        for folder in ("/usr/share/fonts/truetype/dejavu", ""):
            try:
                return ImageFont.truetype(str(Path(folder) / name) if folder else name, size)
            except OSError:
                continue
    return ImageFont.load_default(size)


def thumbnail(path: Path, title: str, chain: list[str], subtitle: str) -> None:
    w, h = 512, 384
    img = Image.new("RGB", (w, h), (24, 26, 33))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w, 56), fill=(51, 51, 85))
    d.text((20, 14), "AdaCache", font=_font(26, bold=True), fill=(235, 235, 255))
    d.text((w - 20, 22), "ComfyUI workflow", font=_font(15), fill=(190, 190, 220), anchor="ra")
    title_font = _font(30 if len(title) <= 22 else 24, bold=True)
    d.text((w // 2, 110), title, font=title_font, fill=(255, 255, 255), anchor="mm")
    d.text((w // 2, 150), subtitle, font=_font(18), fill=(170, 200, 255), anchor="mm")
    # schematic: the model chain, AdaCache boxes highlighted
    n = len(chain)
    gap, box_h, y0 = 22, 56, 220
    box_w = (w - 40 - gap * (n - 1)) // n
    for i, label in enumerate(chain):
        x0 = 20 + i * (box_w + gap)
        ada = label.startswith("AdaCache")
        fill = (70, 70, 150) if ada else (52, 56, 66)
        outline = (150, 150, 255) if ada else (110, 115, 130)
        d.rounded_rectangle((x0, y0, x0 + box_w, y0 + box_h), radius=8, fill=fill,
                            outline=outline, width=2)
        # at least 13 px (the template browser shows the card small): two lines if needed
        size, text = 15, label
        font = _font(size, bold=True)
        while d.textlength(text, font=font) > box_w - 10 and size > 13:
            size -= 1
            font = _font(size, bold=True)
        if d.textlength(text, font=font) > box_w - 10 and " " in label:
            text = label.replace(" ", "\n", 1)
        while max(d.textlength(t, font=font) for t in text.split("\n")) > box_w - 8 and size > 9:
            size -= 1
            font = _font(size, bold=True)
        d.multiline_text((x0 + box_w // 2, y0 + box_h // 2), text, font=font,
                         fill=(240, 240, 240), anchor="mm", align="center", spacing=2)
        if i < n - 1:
            ax = x0 + box_w + 3
            ay = y0 + box_h // 2
            d.line((ax, ay, ax + gap - 7, ay), fill=(200, 200, 200), width=3)
            d.polygon([(ax + gap - 6, ay - 6), (ax + gap - 6, ay + 6), (ax + gap, ay)],
                      fill=(200, 200, 200))
    d.text((w // 2, 330), "adaptive caching for diffusion transformers", font=_font(16),
           fill=(140, 145, 160), anchor="mm")
    img.save(path, "JPEG", quality=88)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (title, build, chain, subtitle) in WORKFLOWS.items():
        graph = build().to_json(f"AdaCache example: {title}. Made by "
                                "scripts/make_example_workflows.py")
        (OUT / f"{name}.json").write_text(json.dumps(graph, indent=2, ensure_ascii=False) + "\n")
        thumbnail(OUT / f"{name}.jpg", title, chain, subtitle)
        print(f"wrote workflows/{name}.json and .jpg")
    demo = OUT / DEMO_FILE
    if demo.is_file():  # the demo's JSON is make_demo_workflow.py's
        calibrating = "AdaCacheCalibrate" in demo.read_text()
        thumbnail(demo.with_suffix(".jpg"), "AdaCache demo (runs on CPU)",
                  ["Demo model", "Calibrate", "AdaCache", "KSampler"] if calibrating
                  else ["Demo model", "AdaCache", "KSampler", "Decode"],
                  "no download · calibrate, then run" if calibrating
                  else "no download · small shipped model + MoReg")
        print(f"wrote workflows/{demo.with_suffix('.jpg').name}")


if __name__ == "__main__":
    main()
