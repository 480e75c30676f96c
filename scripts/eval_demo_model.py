"""Measure the shipped demo model in-process: the numbers in docs/demo.md.

For every scene class and seed: sample uncached, with AdaCache (fast) and with AdaCache + MoReg
(the demo's MoReg settings), decode, and record the motion of the decoded frames (mean |frame
difference|), computed steps and the metric block's raw MoReg motion score per step. Writes
``demo_output/eval/samples.png`` (one row per class: uncached frames of seed 0, 1 and 2) and
``demo_output/eval/eval.json``, and prints a table.

    .venv/bin/python scripts/eval_demo_model.py [--seeds 4] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import load_module  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=ROOT / "demo_output" / "eval")
    ap.add_argument("--norm-a", type=float, default=None, help="override the demo's MoReg a")
    ap.add_argument("--codebook", nargs=2, default=None, metavar=("THRESHOLDS", "RATES"),
                    help='override the demo codebook, e.g. "0.05, 0.1, 1" "4, 2, 1"')
    args = ap.parse_args()
    torch.set_num_threads(2)
    host = load_module("adacache_comfy_host", ROOT / "tests" / "comfy_host.py")
    host.boot_host()
    host.import_pack()
    demo = load_module("adacache_demo_script", ROOT / "scripts" / "demo.py")
    import comfy.sample
    import comfy.sd
    from comfyui_adacache.adacache import AdaCacheConfig, Codebook, MoRegSettings
    from comfyui_adacache.nodes import demo_latent as dl
    from comfyui_adacache.nodes import demo_nodes as dn
    from comfyui_adacache.nodes.patch import apply_adacache

    model = comfy.sd.load_diffusion_model(
        str(ROOT / "models" / "diffusion_models" / demo.MODEL_NAME))
    m = dict(demo.MOREG_DEMO)
    if args.norm_a is not None:
        m["norm_a"] = args.norm_a
    codebook = args.codebook or demo.CODEBOOK_DEMO
    if codebook is not None:
        codebook = Codebook.from_text(*codebook)
    preset = "fast" if codebook is None else "custom"
    moreg = MoRegSettings(enabled=True, strides=(1,), norm_a=m["norm_a"], norm_p=m["norm_p"],
                          norm_b=m["norm_b"], gradient_scale=m["gradient_scale"],
                          window_start=m["window_start"], window_end=m["window_end"])
    variants = {"uncached": model,
                "adacache": apply_adacache(model, AdaCacheConfig(preset=preset,
                                                                 codebook=codebook)),
                "adacache+moreg": apply_adacache(model, AdaCacheConfig(
                    preset=preset, codebook=codebook, moreg=moreg))}
    lat = torch.zeros(1, 16, dl.FRAMES, dl.LATENT_HW, dl.LATENT_HW)
    rows, grid = [], []
    for scene in dl.SCENES:
        pos, neg = dn.AdaCacheDemoScene.execute(scene).args
        grid_row = []
        for seed in range(args.seeds):
            noise = comfy.sample.prepare_noise(lat, seed)
            for name, mdl in variants.items():
                out = comfy.sample.sample(mdl, noise, args.steps, args.cfg, "euler", "simple",
                                          pos, neg, lat, seed=seed)
                rgb = dn.decode_latent(out)
                handle = mdl.model_options.get("transformer_options", {}).get("adacache_handle")
                summary = handle.summary_for(out) if handle is not None else {}
                motions = [r["motion"] for r in summary.get("trace", [])
                           if r.get("motion") is not None]
                rows.append({"scene": scene, "seed": seed, "mode": name,
                             "motion": dl.motion_score(rgb),
                             "computed": summary.get("computed_steps", args.steps),
                             "pattern": summary.get("pattern"),
                             "moreg_motion": motions,
                             "distances": [r.get("distance") for r in summary.get("trace", [])],
                             "distance_range": summary.get("distance_range")})
                if name == "uncached" and seed < 3:
                    grid_row.append(dl.to_uint8(rgb)[0].permute(1, 2, 3, 0).numpy())
        grid.append(np.concatenate([np.concatenate(list(v), 1) for v in grid_row], 1))
        print(f"{scene}: done", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    img = np.concatenate(grid, 0)
    Image.fromarray(img).resize((img.shape[1] * 4, img.shape[0] * 4), Image.NEAREST).save(
        args.out / "samples.png")
    table = []
    for scene in dl.SCENES:
        for mode in variants:
            rs = [r for r in rows if r["scene"] == scene and r["mode"] == mode]
            mm = [x for r in rs for x in r["moreg_motion"]]
            table.append({"scene": scene, "mode": mode,
                          "motion": statistics.mean(r["motion"] for r in rs),
                          "computed_mean": statistics.mean(r["computed"] for r in rs),
                          "computed": [r["computed"] for r in rs],
                          "moreg_motion_median": statistics.median(mm) if mm else None})
    print("| scene | mode | decoded motion | computed steps (mean; per seed) | median m |")
    print("|---|---|---|---|---|")
    for t in table:
        med = f"{t['moreg_motion_median']:.3f}" if t["moreg_motion_median"] else "-"
        print(f"| {t['scene']} | {t['mode']} | {t['motion']:.4f} | {t['computed_mean']:.2f}; "
              f"{', '.join(map(str, t['computed']))} | {med} |")
    (args.out / "eval.json").write_text(json.dumps({"args": {k: str(v) for k, v in
                                                             vars(args).items()},
                                                    "table": table, "runs": rows}, indent=1))
    print(f"wrote {args.out / 'samples.png'} and {args.out / 'eval.json'}")


if __name__ == "__main__":
    main()
