"""Did a zoo model learn its world? Sample every class with a real ComfyUI sampler and compare.

    .venv/bin/python scripts/eval_zoo_model.py --model hunyuan [--seeds 2] [--steps 30]

For every scene class and seed: load the model through ``benchmarks/zoo.py`` (ComfyUI's loader),
sample uncached (euler/simple, cfg 3), decode, and compare with fresh renders of the classes:

* nearest class: each sample is assigned the class whose renders' mean feature is closest
  (features: mean colour of the border pixels, i.e. the class backdrop, mean |frame difference|
  and the frame-to-frame brightness swing); accuracy = samples assigned their own class;
* motion: mean |frame difference| of the samples against that of the renders, per class.

Writes ``<out>/<model>_samples.png`` (per class: the samples' rows, then one render's row) and
``<out>/<model>_eval.json``; prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import load_module  # noqa: E402


def features(rgb: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] -> [B, 5]: border colour, motion, brightness swing between frames."""
    border = torch.cat([rgb[..., 0, :], rgb[..., -1, :], rgb[..., :, 0], rgb[..., :, -1]], -1)
    colour = border.mean(dim=(2, 3))  # [B, 3]
    motion = (rgb[:, :, 1:] - rgb[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
    brightness = rgb.mean(dim=(1, 3, 4))  # [B, T]
    swing = (brightness[:, 1:] - brightness[:, :-1]).abs().mean(1)
    return torch.cat([colour, motion[:, None], swing[:, None]], 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hunyuan")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", type=Path, default=None,
                    help="evaluate another weights file of that model (e.g. a new training run)")
    ap.add_argument("--out", type=Path, default=ROOT / "demo_output" / "zoo_eval")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    host = load_module("adacache_comfy_host", ROOT / "tests" / "comfy_host.py")
    host.boot_host()
    zoo_mod = load_module("adacache_zoo", ROOT / "benchmarks" / "zoo.py")
    zoo = zoo_mod.load(args.model, args.weights)
    w = zoo.world

    renders = {s: zoo.render(s, seed=10_000 + i, count=32) for i, s in enumerate(zoo.scenes)}
    centroids = torch.stack([features(renders[s]).mean(0) for s in zoo.scenes])
    scale = torch.stack([features(renders[s]) for s in zoo.scenes]).flatten(0, 1).std(0) + 1e-3

    rows, sheet = [], []
    for scene in zoo.scenes:
        for seed in range(args.seeds):
            rgb, seconds = zoo.run(zoo.model, scene, seed, steps=args.steps, cfg=args.cfg)
            f = features(rgb)[0]
            nearest = zoo.scenes[int(((centroids - f) / scale).pow(2).sum(1).argmin())]
            rows.append({"scene": scene, "seed": seed, "nearest": nearest,
                         "motion": w.motion_score(rgb), "seconds": seconds})
            sheet.append(rgb[0])
        sheet.append(renders[scene][0])
        print(f"{scene}: {[r['nearest'] for r in rows if r['scene'] == scene]}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    scenes_mod = load_module("adacache_zoo_scenes", ROOT / "benchmarks" / "zoo_scenes.py")
    png = args.out / f"{args.model}_samples.png"
    scenes_mod.contact_sheet(torch.stack(sheet), png, scale=6)
    table = []
    print("| class | nearest class of the samples | motion: samples | motion: renders |")
    print("|---|---|---:|---:|")
    for scene in zoo.scenes:
        rs = [r for r in rows if r["scene"] == scene]
        entry = {"scene": scene, "nearest": [r["nearest"] for r in rs],
                 "motion": sum(r["motion"] for r in rs) / len(rs),
                 "render_motion": w.motion_score(renders[scene])}
        table.append(entry)
        print(f"| {scene} | {', '.join(entry['nearest'])} | {entry['motion']:.3f} | "
              f"{entry['render_motion']:.3f} |")
    accuracy = sum(r["nearest"] == r["scene"] for r in rows) / len(rows)
    print(f"nearest-class accuracy {accuracy:.2f} ({len(rows)} samples, chance "
          f"{1 / len(zoo.scenes):.2f}); sampler {sum(r['seconds'] for r in rows) / len(rows):.2f}"
          f" s per sample; wrote {png}")
    (args.out / f"{args.model}_eval.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "accuracy": accuracy,
         "table": table, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
