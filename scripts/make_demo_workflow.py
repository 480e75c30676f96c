"""Write the demo workflow (``workflows/<DEMO_TITLE>.json``, UI format, for drag and drop).

The same graph that ``scripts/demo.py`` queues in API format (its AdaCache + MoReg branch):
Load Diffusion Model (adacache_demo_wan) -> AdaCache Apply (fast, MoReg Settings connected) ->
KSampler (30 steps, euler/simple, cfg 3) with AdaCache Demo Scene conditioning on an
Empty HunyuanLatentVideo 64x64x29 (= 8x8 latent, 8 frames) -> AdaCache Demo Decode (8x) ->
Save Animated PNG, plus the trace node.

When the pack has the AdaCache Calibrate node, the workflow shows the calibrate -> run path: a
first AdaCache Apply with preset 'calibrate' feeds its own KSampler and AdaCache Calibrate,
whose calibrated plan drives the second AdaCache Apply, whose run AdaCache Report plots
(AdaCache Demo Trace where the pack has no Report node). ``--no-calibrate`` leaves the calibrate
path out. A Note on the canvas explains the path (``tests/test_example_notes.py`` checks its
claims).

Laid out with the node sizes the frontend computes (``make_example_workflows.SIZES``) and the
same overlap resolution as the example workflows.

    .venv/bin/python scripts/make_demo_workflow.py [--no-calibrate]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import make_example_workflows as ex  # scripts/ is this script's sys.path[0]

ROOT = Path(__file__).resolve().parents[1]

ex.SLOTS.update({
    "AdaCacheDemoScene": ([], [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]),
    "AdaCacheDemoDecode": ([("samples", "LATENT", False)], [("frames", "IMAGE")]),
    "AdaCacheDemoTrace": ([("model", "MODEL", False), ("latent", "LATENT", False)], []),
    "AdaCacheReport": ([("model", "MODEL", False), ("latent", "LATENT", False)],
                       [("report", "IMAGE"), ("summary", "STRING")]),
    "AdaCacheCalibrate": ([("model", "MODEL", False), ("latent", "LATENT", False)],
                          [("plan", "ADACACHE_CODEBOOK"), ("moreg", "ADACACHE_MOREG"),
                           ("summary", "STRING")]),
    "SaveAnimatedPNG": ([("images", "IMAGE", False)], []),
    "PreviewImage": ([("images", "IMAGE", False)], []),
})
ex.SIZES.update({
    "AdaCacheDemoScene": (300, 80), "AdaCacheDemoDecode": (260, 60),
    "AdaCacheDemoTrace": (300, 50), "AdaCacheReport": (320, 300),
    "AdaCacheCalibrate": (320, 250), "SaveAnimatedPNG": (300, 360), "PreviewImage": (320, 300),
})
CALIBRATE_SPEED = 3.0  # AdaCache Calibrate's target: 3x fewer block-stack steps (10 of 30)
PLAN_NAME = "demo"

DEMO_SETUP = (
    "It runs on CPU with a tiny video model shipped in the pack (no download). Its nodes "
    "(AdaCache Demo Scene, AdaCache Demo Decode) and the model adacache_demo_wan appear only "
    "when ComfyUI is started with the environment variable ADACACHE_DEMO=1 (e.g. "
    "ADACACHE_DEMO=1 python main.py; on Windows, set ADACACHE_DEMO=1 first). 'make demo' in "
    "the pack's folder runs the same demo headless and writes its results to demo_output/."
)
CALIBRATE_NOTE = (
    "AdaCache demo: calibrate, then run\n\n" + DEMO_SETUP + "\n\n"
    "1 · calibrate: AdaCache Apply with preset 'calibrate' computes every step (full quality, "
    "no speedup) and records how much the features change from step to step. AdaCache "
    f"Calibrate fits a plan to the recorded runs for {CALIBRATE_SPEED:g}x fewer block-stack "
    f"steps (about 10 of the 30), also fits MoReg, and saves the plan as '{PLAN_NAME}' (a "
    "Codebook Editor can pick it by that name). Its KSampler's seed increments on each queue, "
    "so every queue records one more video.\n\n"
    "2 · run: the second AdaCache Apply takes the plan and the MoReg settings from AdaCache "
    "Calibrate (a connected codebook or plan is used whatever the preset) and skips the block "
    "stack on the steps the plan reuses. AdaCache Report plots which steps were computed.\n\n"
    "Queue once: both run, calibration first. Queue again: one more calibration video, and "
    "the plan is refitted to all of them."
)
RUN_NOTE = (
    "AdaCache demo\n\n" + DEMO_SETUP + "\n\n"
    "AdaCache Apply runs the 'fast' preset with MoReg Settings connected; AdaCache Report "
    "plots which steps were computed."
)


def pack_node_ids() -> set[str]:
    """The node ids the pack defines (read from nodes/*.py, without importing ComfyUI)."""
    ids: set[str] = set()
    for path in (ROOT / "nodes").glob("*.py"):
        ids.update(re.findall(r'node_id="(\w+)"', path.read_text()))
    return ids


def _demo_module():
    spec = importlib.util.spec_from_file_location("adacache_demo_script", ROOT / "scripts" /
                                                  "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(calibrate: bool | None = None) -> dict:
    ids = pack_node_ids()
    if calibrate is None:
        calibrate = "AdaCacheCalibrate" in ids
    report_type = "AdaCacheReport" if "AdaCacheReport" in ids else "AdaCacheDemoTrace"
    demo = _demo_module()
    m = demo.MOREG_DEMO
    g = ex.Graph()
    unet = g.add("UNETLoader", (20, 60), [demo.MODEL_NAME, "default"])
    scene = g.add("AdaCacheDemoScene", (20, 200), ["fast motion"])
    latent = g.add("EmptyHunyuanLatentVideo", (20, 330), [64, 64, 29, 1])
    moreg = None
    if not calibrate:  # the calibrated path takes MoReg normalised to the model from Calibrate
        moreg = g.add("AdaCacheMoRegSettings", (20, 510),
                      [True, m["frame_strides"], m["norm_a"], m["norm_p"], m["norm_b"],
                       m["gradient_scale"], m["window_start"], m["window_end"]],
                      colors=ex.ADACACHE)

    def sampler(model, pos, seed_control="fixed"):
        ks = g.add("KSampler", pos, [0, seed_control, 30, 3.0, "euler", "simple", 1.0])
        g.link(model, 0, ks, "model")
        g.link(scene, 0, ks, "positive")
        g.link(scene, 1, ks, "negative")
        g.link(latent, 0, ks, "latent_image")
        return ks

    y = 60
    codebook_source = None
    if calibrate:
        # the calibration run records distances over every gap and motion, MoReg or not
        cal_apply = ex.adacache(g, (380, y), (unet, 0), "calibrate",
                                title="AdaCache Apply (1 · calibrate)")
        cal_ks = sampler(cal_apply, (880, y), "increment")  # each queue: one more seed
        cal = g.add("AdaCacheCalibrate", (1240, y),
                    [CALIBRATE_SPEED, True, PLAN_NAME, "all recorded"], colors=ex.ADACACHE)
        g.link(cal_apply, 0, cal, "model")
        g.link(cal_ks, 0, cal, "latent")
        codebook_source = cal
        # free space between the two Apply nodes (a node that grows moves the ones below)
        y += ex.SIZES["AdaCacheApply"][1] + 140
    apply = ex.adacache(g, (380, y), (unet, 0), "custom" if calibrate else "fast", moreg=moreg,
                        codebook=codebook_source,
                        title="AdaCache Apply (2 · run)" if calibrate else None)
    if calibrate:
        g.link(codebook_source, 1, apply, "moreg")  # MoReg normalised to the model
    ks = sampler(apply, (880, y))
    decode = g.add("AdaCacheDemoDecode", (1240, y), [8])
    save = g.add("SaveAnimatedPNG", (1240, y + 130), ["adacache_demo", 6.0, 4])
    g.link(ks, 0, decode, "samples")
    g.link(decode, 0, save, "images")
    report = g.add(report_type, (880, y + 330), [])
    g.link(apply, 0, report, "model")
    g.link(ks, 0, report, "latent")
    if report_type == "AdaCacheReport":
        preview = g.add("PreviewImage", (1240, y + 530), [])
        g.link(report, 0, preview, "images")
    ex.note(g, (20, 530), CALIBRATE_NOTE if calibrate else RUN_NOTE,
            title="About this demo", width=340)
    info = ("AdaCache demo on the shipped adacache_demo_wan model (no download); see "
            "docs/demo.md")
    if calibrate:
        info += (". 1: AdaCache Apply 'calibrate' computes every step and records distances; "
                 "AdaCache Calibrate fits a calibrated plan to them (each queue adds a seed). 2: "
                 "the second AdaCache Apply runs with that plan")
    return g.to_json(info)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-calibrate", action="store_true",
                        help="leave out the calibrate -> run path")
    args = parser.parse_args()
    path = ROOT / "workflows" / ex.DEMO_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(build(False if args.no_calibrate else None), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
