"""Writes the example workflows in ``workflows/`` (UI format) and their ``.jpg`` thumbnails.

    .venv/bin/python scripts/make_example_workflows.py

Each workflow follows the official ComfyUI template for its model family (the
``comfyui_workflow_templates`` package: same nodes, settings and model file names) with AdaCache
Apply inserted between the model loader (after ModelSamplingSD3 where the template has it) and
the sampler, a MoReg Settings node on the video models, and a Note explaining the preset.
Each example is one row of the table ``WORKFLOWS``: its template card and its nodes as data
(``Node``: type, position, widgets, which node feeds each input), the shared ones written by
small helpers with their usual wiring (``apply``, ``prompts``, ``ksampler``, ``video_out``,
``preset_note``); one ``build`` turns a row into a graph.
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
from dataclasses import dataclass, field
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


# --- the builder ----------------------------------------------------------------------------


@dataclass
class Node:
    """One node of an example: ``inputs`` maps each linked input to the node that feeds it, by
    name (``"name"`` for its first output, ``"name.2"`` for its third); ``name`` is how later
    nodes refer to this one. Nodes are added, and their inputs linked, in list order."""

    type: str
    pos: tuple[int, int]
    widgets: list = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    name: str = ""
    title: str | None = None
    mode: int = 0
    colors: dict | None = None
    size: tuple[int, int] | None = None


@dataclass
class Family:
    """One example workflow: the template card (thumbnail title, model chain, subtitle) and its
    nodes."""

    thumb: str
    chain: list[str]
    subtitle: str
    nodes: list[Node]


def build(nodes: list[Node]) -> Graph:
    g = Graph()
    ids: dict[str, int] = {}
    for n in nodes:
        node_id = g.add(n.type, n.pos, list(n.widgets), title=n.title, mode=n.mode,
                        colors=n.colors, size=n.size)
        for input_name, source in n.inputs.items():
            src, _, slot = source.partition(".")
            g.link(ids[src], int(slot or 0), node_id, input_name)
        if n.name:
            ids[n.name] = node_id
    return g


def flat(*parts) -> list[Node]:
    """Nodes and lists of nodes as one list."""
    return [n for p in parts for n in (p if isinstance(p, list) else [p])]


# --- the nodes every example shares, with their usual wiring --------------------------------


def apply_widgets(preset: str, start=0.0, end=1.0) -> list:
    return [preset, APPLY_DEFAULTS["metric"], APPLY_DEFAULTS["metric_blocks"], start, end,
            False, False]


def apply(pos, preset: str, model="shift", *, moreg=True, codebook=False, title=None,
          name="apply") -> Node:
    inputs = {"model": model, "moreg": "moreg" if moreg else None,
              "codebook": "codebook" if codebook else None}
    return Node("AdaCacheApply", pos, apply_widgets(preset),
                {k: v for k, v in inputs.items() if v}, name, title, colors=ADACACHE)


def moreg(pos) -> Node:
    return Node("AdaCacheMoRegSettings", pos, list(MOREG_DEFAULTS), name="moreg",
                colors=ADACACHE)


def shift(value: int, model="model", name="shift", pos=(400, -120), title=None) -> Node:
    return Node("ModelSamplingSD3", pos, [value], {"model": model}, name, title)


def prompts(pos, positive: str, negative: str) -> list[Node]:
    x, y = pos
    return [Node("CLIPTextEncode", (x, y), [positive], {"clip": "clip"}, "positive",
                 "CLIP Text Encode (Positive Prompt)", colors=POSITIVE),
            Node("CLIPTextEncode", (x, y + 210), [negative], {"clip": "clip"}, "negative",
                 "CLIP Text Encode (Negative Prompt)", colors=NEGATIVE)]


def positive_prompt(pos, text: str) -> Node:
    return Node("CLIPTextEncode", pos, [text], {"clip": "clip"}, "positive",
                "CLIP Text Encode (Positive Prompt)", colors=POSITIVE)


def ksampler(pos, seed: int, steps: int, cfg, sampler: str, *, positive="positive",
             negative="negative", latent="latent") -> Node:
    return Node("KSampler", pos, [seed, "randomize", steps, cfg, sampler, "simple", 1],
                {"model": "apply", "positive": positive, "negative": negative,
                 "latent_image": latent}, "sampler")


def video_out(pos, fps: int, vae="vae", *, tiled: list | None = None) -> list[Node]:
    x, y = pos
    decode = ("VAEDecodeTiled", tiled) if tiled is not None else ("VAEDecode", [])
    return [Node(decode[0], (x, y), decode[1], {"samples": "sampler", "vae": vae}, "decoded"),
            Node("CreateVideo", (x, y + 180), [fps], {"images": "decoded"}, "video"),
            Node("SaveVideo", (x, y + 300), ["video/AdaCache", "auto", "auto"],
                 {"video": "video"})]


def loaders(rows: list[tuple[str, str, int, list]]) -> list[Node]:
    """Column 0: (name, node type, y, widgets) each."""
    return [Node(type_, (0, y), widgets, name=name) for name, type_, y, widgets in rows]


# Frontend 1.32.9 draws a Note's text in a ~10 px monospace font (about 6.2 px a character,
# 11 px a line); sized with wider characters and taller lines than that, a Note shows all of
# its text without scrolling on other systems' monospace fonts too (tests/test_ui_examples.py
# measures it in the real frontend).
NOTE_CHAR_W, NOTE_LINE_H, NOTE_PAD = 7.0, 12.5, 24


def note_height(text: str, width: int) -> int:
    per_line = int((width - NOTE_PAD) / NOTE_CHAR_W)
    lines = sum(len(textwrap.wrap(par, per_line)) or 1 for par in text.split("\n"))
    return int(math.ceil(lines * NOTE_LINE_H + NOTE_PAD))


def note_node(pos, text: str, title="About the AdaCache preset", width=360) -> Node:
    return Node("Note", pos, [text], title=title, colors=NOTE,
                size=(width, note_height(text, width)))


def adacache(g: Graph, pos, model_src: tuple[int, int], preset: str, *, moreg=None,
             codebook=None, title=None) -> int:
    """AdaCache Apply added to ``g`` by node id (the demo's builder)."""
    node = g.add("AdaCacheApply", pos, apply_widgets(preset), title=title, colors=ADACACHE)
    g.link(*model_src, node, "model")
    if moreg is not None:
        g.link(moreg, 0, node, "moreg")
    if codebook is not None:
        g.link(codebook, 0, node, "codebook")
    return node


def note(g: Graph, pos, text: str, title="About the AdaCache preset", width=360) -> int:
    n = note_node(pos, text, title, width)
    return g.add("Note", n.pos, n.widgets, title=n.title, colors=n.colors, size=n.size)


PRESETS_TEXT = (
    "Presets (scaled to your step count): fast = most reuse (the paper's AdaCache-fast at 30 "
    "steps), medium = in between, slow = closest to the uncached video. A connected codebook "
    "(Codebook Editor) or calibrated plan (AdaCache Calibrate) is used whatever the preset, "
    "except 'calibrate'; the log says it replaced the preset."
)
VERBOSE_TEXT = (
    "Turn on 'verbose' on AdaCache Apply to log, per step, whether the block stack was "
    "computed or reused and the chosen cache rate."
)
MOREG_TEXT = (
    "MoReg Settings: recompute more often when the video moves fast (motion measured from frame "
    "differences of the cached features). Set 'enabled' to false or disconnect it to compare."
)


def preset_note(pos, family: str, preset: str, why: str, extra: str = MOREG_TEXT,
                width=360) -> Node:
    text = (f"AdaCache on {family}: preset {preset if ' ' in preset else repr(preset)}.\n\n"
            f"{why}\n\n{PRESETS_TEXT}\n\n" + VERBOSE_TEXT + (f"\n\n{extra}" if extra else ""))
    return note_node(pos, text, width=width)


# --- the examples ---------------------------------------------------------------------------

UMT5 = ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"]

# template title (= file name) -> its family's card and nodes
WORKFLOWS: dict[str, Family] = {
    "Wan 2.1 text to video 1.3B": Family(
        "Wan 2.1 T2V 1.3B", ["UNET", "Shift", "AdaCache", "KSampler"], "custom codebook", flat(
            loaders([
                ("model", "UNETLoader", 0, ["wan2.1_t2v_1.3B_fp16.safetensors", "default"]),
                ("clip", "CLIPLoader", 130, UMT5),
                ("vae", "VAELoader", 280, ["wan_2.1_vae.safetensors"]),
                ("latent", "EmptyHunyuanLatentVideo", 390, [832, 480, 33, 1]),
            ]),
            shift(8),
            Node("AdaCacheCodebookEditor", (400, 0),
                 ["0.08, 0.16, 0.24, 0.32, 0.4, 1", "5, 4, 3, 2, 2, 1", "(use the values above)"],
                 name="codebook", colors=ADACACHE),
            moreg((400, 120)),
            apply((760, -120), "custom", codebook=True),
            prompts((400, 420), FOX, WAN_NEGATIVE),
            ksampler((860, 160), 82628696717253, 30, 6, "uni_pc"),
            video_out((1230, -120), 16),
            preset_note(
                (0, 560), "Wan 2.1 T2V 1.3B", "custom",
                "This example uses a custom codebook (Codebook Editor). A custom codebook is "
                "used as typed, not scaled to the step count: these values are for this "
                "example's 30 steps. A distance below 0.08 runs the block stack again 5 steps "
                "later (the 4 steps between reuse it), below 0.16 after 4 steps, ..., and a "
                "distance of 0.4 or more runs it every step. The rates lie between the 'medium' "
                "(4, 3, 2, 2, 1, 1) and 'fast' (6, 5, 4, 3, 2, 1) presets at 30 steps. To use a "
                "preset instead, disconnect the Codebook Editor and pick 'fast', 'medium' or "
                "'slow': while a codebook is connected, it is used whatever the preset says."),
        )),
    "Wan 2.1 image to video 14B": Family(
        "Wan 2.1 I2V 480p 14B", ["UNET", "Shift", "AdaCache", "KSampler"], "fast + MoReg", flat(
            loaders([
                ("model", "UNETLoader", 0, ["wan2.1_i2v_480p_14B_fp16.safetensors", "default"]),
                ("clip", "CLIPLoader", 130, UMT5),
                ("vae", "VAELoader", 280, ["wan_2.1_vae.safetensors"]),
                ("vision", "CLIPVisionLoader", 380, ["clip_vision_h.safetensors"]),
                ("image", "LoadImage", 480, ["example.png", "image"]),
            ]),
            shift(8),
            moreg((400, 0)),
            apply((760, -120), "fast"),
            prompts((400, 300), "a cute anime girl with massive fennec ears and a big fluffy "
                    "tail wearing a maid outfit turning around", WAN_NEGATIVE),
            Node("CLIPVisionEncode", (400, 720), ["none"],
                 {"clip_vision": "vision", "image": "image"}, "seen"),
            Node("WanImageToVideo", (860, 420), [512, 512, 33, 1],
                 {"positive": "positive", "negative": "negative", "vae": "vae",
                  "clip_vision_output": "seen", "start_image": "image"}, "i2v"),
            ksampler((860, 120), 987948718394761, 20, 6, "uni_pc", positive="i2v",
                     negative="i2v.1", latent="i2v.2"),
            video_out((1230, -120), 16),
            preset_note(
                (1230, 620), "Wan 2.1 I2V 480p 14B", "fast",
                "Image-to-video keeps the first frame fixed, so most of the video's content is "
                "decided early; 'fast' reuses the most. At 20 steps the preset is scaled from "
                "the paper's 30-step codebook to higher thresholds and lower rates (fast at 20 "
                "steps: rates 4, 3, 3, 2, 1, 1). If fine detail drifts, try 'medium'."),
        )),
    "Wan 2.2 14B, two experts": Family(
        "Wan 2.2 T2V 14B two experts",
        ["2 experts", "Shift x2", "AdaCache x2", "KSamplerAdv x2"], "medium / fast + MoReg", flat(
            loaders([
                ("high", "UNETLoader", 0,
                 ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "default"]),
                ("low", "UNETLoader", 130,
                 ["wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "default"]),
                ("clip", "CLIPLoader", 260, UMT5),
                ("vae", "VAELoader", 410, ["wan_2.1_vae.safetensors"]),
                ("latent", "EmptyHunyuanLatentVideo", 510, [640, 640, 81, 1]),
            ]),
            shift(8, "high", "shift_high", title="ModelSamplingSD3 (high noise)"),
            shift(8, "low", "shift_low", (400, 0), title="ModelSamplingSD3 (low noise)"),
            moreg((400, 120)),
            apply((760, -360), "medium", "shift_high", name="apply_high",
                  title="AdaCache Apply (high-noise expert)"),
            apply((760, -100), "fast", "shift_low", name="apply_low",
                  title="AdaCache Apply (low-noise expert)"),
            prompts((400, 400), "Beautiful young European woman with honey blonde hair "
                    "gracefully turning her head back over shoulder, gentle smile, bright eyes "
                    "looking at camera. Hair flowing in slow motion as she turns. Soft natural "
                    "lighting, clean background, cinematic portrait.", WAN_NEGATIVE),
            Node("KSamplerAdvanced", (1120, -360),
                 ["enable", 864031777124281, "randomize", 20, 3.5, "euler", "simple", 0, 10,
                  "enable"],
                 {"model": "apply_high", "positive": "positive", "negative": "negative",
                  "latent_image": "latent"}, "sampler_high",
                 "KSamplerAdvanced (high noise, steps 0-10)"),
            Node("KSamplerAdvanced", (1120, 20),
                 ["disable", 0, "fixed", 20, 3.5, "euler", "simple", 10, 10000, "disable"],
                 {"model": "apply_low", "positive": "positive", "negative": "negative",
                  "latent_image": "sampler_high"}, "sampler",
                 "KSamplerAdvanced (low noise, steps 10-20)"),
            video_out((1480, -360), 16),
            preset_note(
                (0, 680), "Wan 2.2 T2V 14B (two experts)", "'medium' on the high-noise expert, "
                "'fast' on the low-noise expert",
                "Each expert is its own model and gets its own AdaCache Apply; each sampler runs "
                "only its part of the schedule (steps 0-10 and 10-20 here), and each preset is "
                "sized for the whole 20-step schedule, not for the 10 steps its expert sees. The "
                "high-noise expert lays out composition and motion, where reuse costs the most "
                "quality, so it gets 'medium'; the low-noise expert refines detail on an already "
                "formed video and tolerates 'fast'. One MoReg Settings node feeds both.",
                width=380),
        )),
    "Wan 2.2 TI2V 5B": Family(
        "Wan 2.2 TI2V 5B", ["UNET", "Shift", "AdaCache", "KSampler"], "fast + MoReg", flat(
            loaders([
                ("model", "UNETLoader", 0, ["wan2.2_ti2v_5B_fp16.safetensors", "default"]),
                ("clip", "CLIPLoader", 130, UMT5),
                ("vae", "VAELoader", 280, ["wan2.2_vae.safetensors"]),
            ]),
            Node("LoadImage", (0, 380), ["example.png", "image"], name="image",
                 title="Start frame (optional: un-bypass)", mode=4),
            shift(8),
            moreg((400, 0)),
            apply((760, -120), "fast"),
            prompts((400, 300), "Low contrast. In a retro 1970s-style subway station, a street "
                    "musician plays in dim colors and rough textures. He wears an old jacket, "
                    "playing guitar with focus. Commuters hurry by, and a small crowd gathers to "
                    "listen.", WAN_NEGATIVE),
            Node("Wan22ImageToVideoLatent", (860, 420), [1280, 704, 121, 1],
                 {"vae": "vae", "start_image": "image"}, "latent"),
            ksampler((860, 120), 898471028164125, 20, 5, "uni_pc"),
            video_out((1230, -120), 24),
            preset_note(
                (1230, 620), "Wan 2.2 TI2V 5B (48-channel latent, Wan22ImageToVideoLatent)",
                "fast",
                "The 5B model makes long 720p videos (121 frames), where the block stack "
                "dominates the run time, so 'fast' saves the most. The latent has 48 channels "
                "and a 16x spatial compression; AdaCache only looks at the transformer's tokens, "
                "so nothing changes for it. Text-to-video as saved; un-bypass Load Image "
                "(Ctrl+B) for image-to-video."),
        )),
    "HunyuanVideo text to video": Family(
        "HunyuanVideo T2V", ["UNET", "Shift", "AdaCache", "Guider"], "fast + MoReg", flat(
            loaders([
                ("model", "UNETLoader", 0, ["hunyuan_video_t2v_720p_bf16.safetensors", "default"]),
                ("clip", "DualCLIPLoader", 130, ["clip_l.safetensors",
                 "llava_llama3_fp8_scaled.safetensors", "hunyuan_video", "default"]),
                ("vae", "VAELoader", 300, ["hunyuan_video_vae_bf16.safetensors"]),
                ("latent", "EmptyHunyuanLatentVideo", 400, [848, 480, 73, 1]),
            ]),
            shift(7),
            moreg((400, 0)),
            apply((760, -120), "fast"),
            positive_prompt((400, 300), "anime style anime girl with massive fennec ears and one "
                            "big fluffy tail, she has blonde hair long hair blue eyes wearing a "
                            "pink sweater and a long blue skirt walking in a beautiful outdoor "
                            "scenery with snow mountains in the background"),
            Node("FluxGuidance", (400, 520), [6], {"conditioning": "positive"}, "guidance"),
            Node("BasicGuider", (1120, -120), [],
                 {"model": "apply", "conditioning": "guidance"}, "guider"),
            Node("BasicScheduler", (1120, 0), ["simple", 20, 1], {"model": "model"}, "sigmas"),
            Node("KSamplerSelect", (1120, 140), ["euler"], name="select"),
            Node("RandomNoise", (1120, 240), [1, "randomize"], name="noise"),
            Node("SamplerCustomAdvanced", (1120, 360), [],
                 {"noise": "noise", "guider": "guider", "sampler": "select",
                  "sigmas": "sigmas", "latent_image": "latent"}, "sampler"),
            video_out((1480, -120), 24, tiled=[256, 64, 64, 8]),
            preset_note(
                (0, 560), "HunyuanVideo T2V 720p", "fast",
                "HunyuanVideo runs a double-stream and a single-stream block stack; AdaCache "
                "caches the residual across both (text tokens included) and takes motion from "
                "the video tokens only. Guidance is distilled (one model call per step, "
                "FluxGuidance), so every reused step saves a whole call: 'fast' at 20 steps."),
        )),
    "LTX-Video text to video": Family(
        "LTX-Video T2V", ["Checkpoint", "AdaCache", "SamplerCustom"], "medium + MoReg", flat(
            loaders([
                ("model", "CheckpointLoaderSimple", 0, ["ltx-video-2b-v0.9.safetensors"]),
                ("clip", "CLIPLoader", 140, ["t5xxl_fp16.safetensors", "ltxv", "default"]),
                ("latent", "EmptyLTXVLatentVideo", 290, [768, 512, 97, 1]),
            ]),
            moreg((400, 0)),
            apply((400, -260), "medium", "model"),
            prompts(
                (400, 300),
                "A woman with long brown hair and light skin smiles at another woman with long "
                "blonde hair. The woman with brown hair wears a black jacket and has a small, "
                "barely noticeable mole on her right cheek. The camera angle is a close-up, "
                "focused on the woman with brown hair's face. The lighting is warm and natural, "
                "likely from the setting sun, casting a soft glow on the scene. The scene "
                "appears to be real-life footage.",
                "low quality, worst quality, deformed, distorted, disfigured, motion smear, "
                "motion artifacts, fused fingers, bad anatomy, weird hand, ugly"),
            Node("LTXVConditioning", (860, 300), [25],
                 {"positive": "positive", "negative": "negative"}, "cond"),
            Node("LTXVScheduler", (860, 420), [30, 2.05, 0.95, True, 0.1], {"latent": "latent"},
                 "sigmas"),
            Node("KSamplerSelect", (860, 600), ["euler"], name="select"),
            Node("SamplerCustom", (860, -260), [True, 497797676867141, "randomize", 3],
                 {"model": "apply", "positive": "cond", "negative": "cond.1",
                  "sampler": "select", "sigmas": "sigmas", "latent_image": "latent"},
                 "sampler"),
            video_out((1230, -260), 24, vae="model.2"),
            preset_note(
                (0, 450), "LTX-Video 2B", "medium",
                "LTX-Video is already fast (a high-compression VAE, few tokens per frame), so "
                "there is less to save and each reused step matters more for quality: 'medium' "
                "at 30 steps. Try 'fast' for previews."),
        )),
    "Mochi text to video": Family(
        "Mochi T2V", ["UNET", "AdaCache", "KSampler"], "fast + MoReg", flat(
            loaders([
                ("model", "UNETLoader", 0, ["mochi_preview_bf16.safetensors", "default"]),
                ("clip", "CLIPLoader", 130, ["t5xxl_fp16.safetensors", "mochi", "default"]),
                ("vae", "VAELoader", 280, ["mochi_vae.safetensors"]),
                ("latent", "EmptyMochiLatentVideo", 380, [848, 480, 37, 1]),
            ]),
            moreg((400, 0)),
            apply((400, -260), "fast", "model"),
            prompts((400, 300), "a fox moving quickly in a beautiful winter scenery nature trees "
                    "sunset tracking camera", ""),
            ksampler((860, -260), 704883238463297, 30, 4.5, "euler"),
            video_out((1230, -260), 24),
            preset_note(
                (0, 540), "Mochi preview", "fast",
                "Mochi is a large asymmetric DiT (10B) where the block stack is nearly all of the "
                "run time; at 30 steps 'fast' is the paper's AdaCache-fast codebook exactly."),
        )),
    "Cosmos Predict2 image to video": Family(
        "Cosmos Predict2 Video2World", ["UNET", "AdaCache", "KSampler"], "medium + MoReg", flat(
            loaders([
                ("model", "UNETLoader", 0,
                 ["cosmos_predict2_2B_video2world_480p_16fps.safetensors", "default"]),
                ("clip", "CLIPLoader", 130,
                 ["oldt5_xxl_fp8_e4m3fn_scaled.safetensors", "cosmos", "default"]),
                ("vae", "VAELoader", 280, ["wan_2.1_vae.safetensors"]),
            ]),
            Node("LoadImage", (0, 380), ["example.png", "image"], name="image",
                 title="Load Image (start frame)"),
            moreg((400, 0)),
            apply((400, -260), "medium", "model"),
            prompts(
                (400, 300),
                "A nighttime city bus terminal gradually shifts from stillness to subtle "
                "movement. A central bus moves ahead slowly, its headlights brightening the "
                "surrounding area and casting reflections onto adjacent vehicles.",
                "The video captures a series of frames showing ugly scenes, static with no "
                "motion, motion blur, over-saturation, shaky footage, low resolution, grainy "
                "texture, pixelated images, poorly lit areas, underexposed and overexposed "
                "scenes, poor color balance, washed out colors, choppy sequences, jerky "
                "movements, low frame rate, artifacting, color banding, unnatural transitions, "
                "outdated special effects, fake elements, unconvincing visuals, poorly edited "
                "content, jump cuts, visual noise, and flickering."),
            Node("CosmosPredict2ImageToVideoLatent", (860, 420), [848, 480, 93, 1],
                 {"vae": "vae", "start_image": "image"}, "latent"),
            ksampler((860, -260), 788533681999051, 35, 7, "euler"),
            video_out((1230, -260), 16),
            preset_note(
                (1230, 420), "Cosmos Predict2 2B Video2World", "medium",
                "Cosmos predict2 offers no per-block replacement in ComfyUI, so AdaCache uses "
                "its whole-model mode: a reused step skips the diffusion model's forward and "
                "reuses its output residual, with the distance taken on the output. That is "
                "coarser than caching the block stack, hence 'medium'."),
        )),
    "Flux.1 dev text to image": Family(
        "Flux.1 dev T2I", ["UNET", "AdaCache", "KSampler"], "slow", flat(
            loaders([
                ("model", "UNETLoader", 0, ["flux1-dev.safetensors", "default"]),
                ("clip", "DualCLIPLoader", 130,
                 ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"]),
                ("vae", "VAELoader", 300, ["ae.safetensors"]),
                ("latent", "EmptySD3LatentImage", 400, [1024, 1024, 1]),
            ]),
            apply((400, -260), "slow", "model", moreg=False),
            positive_prompt((400, 20), "cute anime girl with massive fluffy fennec ears and a "
                            "big fluffy tail blonde messy long hair blue eyes wearing a maid "
                            "outfit with a long black gold leaf pattern dress"),
            Node("FluxGuidance", (400, 240), [3.5], {"conditioning": "positive"}, "guidance"),
            Node("ConditioningZeroOut", (400, 340), [], {"conditioning": "positive"}, "zero"),
            ksampler((860, -260), 972054013131368, 20, 1, "euler", positive="guidance",
                     negative="zero"),
            Node("VAEDecode", (1230, -260), [], {"samples": "sampler", "vae": "vae"}, "decoded"),
            Node("SaveImage", (1230, -160), ["AdaCache/flux"], {"images": "decoded"}),
            preset_note(
                (0, 540), "Flux.1 dev (text to image)", "slow",
                "An image has one frame, so MoReg has no motion to measure: this example has no "
                "MoReg Settings node (connected to an image model, it changes nothing and "
                "AdaCache warns that its factor stays 1). A still image shows every detail at "
                "once, so 'slow' keeps it closest to the uncached result; 'medium' or 'fast' "
                "give quick drafts.", extra=""),
        )),
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
    for name, family in WORKFLOWS.items():
        graph = build(family.nodes).to_json(f"AdaCache example: {family.thumb}. Made by "
                                            "scripts/make_example_workflows.py")
        (OUT / f"{name}.json").write_text(json.dumps(graph, indent=2, ensure_ascii=False) + "\n")
        thumbnail(OUT / f"{name}.jpg", family.thumb, family.chain, family.subtitle)
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
