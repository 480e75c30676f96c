"""Write ``workflows/adacache_demo.json``: the drag-and-drop (UI-format) demo workflow.

The same graph that ``scripts/demo.py`` queues in API format (its AdaCache + MoReg branch):
Load Diffusion Model (adacache_demo_wan) -> AdaCache Apply (fast, MoReg Settings connected) ->
KSampler (30 steps, euler/simple, cfg 3) with AdaCache Demo Scene conditioning on an
Empty HunyuanLatentVideo 64x64x29 (= 8x8 latent, 8 frames) -> AdaCache Demo Decode (8x) ->
Save Animated PNG, plus AdaCache Report (the trace plot, previewed on the node).

    .venv/bin/python scripts/make_demo_workflow.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _demo_module():
    spec = importlib.util.spec_from_file_location("adacache_demo_script", ROOT / "scripts" /
                                                  "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build() -> dict:
    demo = _demo_module()
    m = demo.MOREG_DEMO
    # id, type, pos, size, widgets_values, inputs [(name, type)], outputs [(name, type)]
    specs = [
        (1, "UNETLoader", (20, 60), (300, 90), [demo.MODEL_NAME, "default"], [],
         [("MODEL", "MODEL")]),
        (6, "AdaCacheMoRegSettings", (20, 200), (300, 250),
         [True, m["frame_strides"], m["norm_a"], m["norm_p"], m["norm_b"], m["gradient_scale"],
          m["window_start"], m["window_end"]], [], [("moreg", "ADACACHE_MOREG")]),
        (4, "AdaCacheApply", (360, 60), (300, 230),
         ["fast", "l1", "middle", 0.0, 1.0, False, False],
         [("model", "MODEL"), ("codebook", "ADACACHE_CODEBOOK"), ("moreg", "ADACACHE_MOREG")],
         [("MODEL", "MODEL")]),
        (2, "AdaCacheDemoScene", (20, 480), (300, 80), ["fast motion"], [],
         [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]),
        (3, "EmptyHunyuanLatentVideo", (20, 600), (300, 130), [64, 64, 29, 1], [],
         [("LATENT", "LATENT")]),
        (5, "KSampler", (700, 60), (300, 270),
         [0, "fixed", 30, 3.0, "euler", "simple", 1.0],
         [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
          ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
        (7, "AdaCacheDemoDecode", (1040, 60), (260, 80), [8],
         [("samples", "LATENT")], [("frames", "IMAGE")]),
        (8, "SaveAnimatedPNG", (1040, 180), (300, 360), ["adacache_demo", 6.0, 4],
         [("images", "IMAGE")], []),
        (9, "AdaCacheReport", (700, 380), (320, 300), [],
         [("model", "MODEL"), ("latent", "LATENT")], [("report", "IMAGE"), ("summary", "STRING")]),
    ]
    # (from id, from slot) -> (to id, input name)
    edges = [(1, 0, 4, "model"), (6, 0, 4, "moreg"), (4, 0, 5, "model"), (2, 0, 5, "positive"),
             (2, 1, 5, "negative"), (3, 0, 5, "latent_image"), (5, 0, 7, "samples"),
             (7, 0, 8, "images"), (4, 0, 9, "model"), (5, 0, 9, "latent")]
    nodes, links = {}, []
    for order, (nid, typ, pos, size, widgets, inputs, outputs) in enumerate(specs):
        nodes[nid] = {
            "id": nid, "type": typ, "pos": list(pos), "size": list(size), "flags": {},
            "order": order, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": typ}, "widgets_values": widgets,
        }
    for lid, (src, slot, dst, name) in enumerate(edges, start=1):
        typ = nodes[src]["outputs"][slot]["type"]
        nodes[src]["outputs"][slot]["links"].append(lid)
        for inp in nodes[dst]["inputs"]:
            if inp["name"] == name:
                inp["link"] = lid
        links.append([lid, src, slot, dst, [i["name"] for i in nodes[dst]["inputs"]].index(name),
                      typ])
    return {
        "last_node_id": max(nodes), "last_link_id": len(links),
        "nodes": list(nodes.values()), "links": links, "groups": [], "config": {},
        "extra": {"info": "AdaCache demo on the shipped adacache_demo_wan model; see "
                  "docs/demo.md"},
        "version": 0.4,
    }


def main():
    path = ROOT / "workflows" / "adacache_demo.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
