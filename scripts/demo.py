"""``make demo``: AdaCache end to end inside a real, headless ComfyUI on the shipped demo model.

Starts ComfyUI (``.host/ComfyUI``, set up by ``scripts/setup_host.sh``) with only this pack,
queues the demo graph (UNETLoader -> [AdaCache Apply (+ MoReg Settings)] -> KSampler ->
AdaCache Demo Decode -> SaveImage, plus AdaCache Report -> SaveImage) over its HTTP API for
each scene and seed in three modes - uncached, AdaCache (preset fast), AdaCache + MoReg - and
writes to ``demo_output/``:

* ``<scene>.gif``             side by side: uncached | AdaCache | AdaCache + MoReg (seed 0)
* ``trace_<scene>_<mode>.png`` the AdaCache Report image: per-step distance with the codebook's
  thresholds and rates, MoReg factor, computed steps
* ``summary.md`` / ``summary.json`` wall-time speedup measured in this run, computed steps,
  PSNR / SSIM against the uncached output of the same seed, motion of the decoded frames.

How the trace comes back: the graph ends in the pack's output node "AdaCache Report", which
returns the summary of the run that produced its latent as UI data (and its plot as an IMAGE,
saved), so it is in ``/history/<prompt_id>`` with the images - no websocket client needed, and
it is tied to the prompt that produced it.
Wall time is the server's own ``execution_start`` -> ``execution_success`` timestamps of each
prompt (model loading is done once by a warm-up prompt first and then cached by ComfyUI).

    .venv/bin/python scripts/demo.py [--scenes static "fast motion"] [--seeds 4] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from headless_comfy import COMFY, ROOT, HeadlessComfy  # scripts/ is this script's sys.path[0]

sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import fmt, psnr, ssim  # noqa: E402
from PIL import Image, ImageDraw

PACK_DIR_NAME = "adacache_demo_pack"  # not the host's own custom_nodes link (loaded twice)
MODEL_NAME = "adacache_demo_wan.safetensors"
MODES = ["uncached", "adacache", "adacache+moreg", "calibrated"]
CALIBRATION_SEEDS = (100, 101)  # per scene; never the demo's own seeds
CALIBRATED_NAME = "demo"  # the saved codebook the "calibrated" mode picks by name
# MoReg for this model: the reference's normalisation a = 0.385 was fitted to Open-Sora's motion
# scores; this model's metric-block residuals score far lower, which would make m' ~ 0 (MoReg
# would then *suppress* recomputation). a is re-fitted to this model (docs/demo.md): between the
# motion scores measured on static and on fast-motion scenes (late-step medians ~0.16 vs ~0.26,
# scripts/eval_demo_model.py), so m' < 1 on static scenes and m' > 1 on fast motion.
# Everything else is the reference's.
MOREG_DEMO = {"frame_strides": "1", "norm_a": 0.2, "norm_p": 8.0, "norm_b": 1.0,
              "gradient_scale": 10.0, "window_start": 0.1, "window_end": 0.9}
# Codebook: None = the paper's "fast, 30 steps" preset; or (thresholds, rates) strings for a
# codebook calibrated to this model (supplement A.2), used through AdaCache Codebook Editor.
CODEBOOK_DEMO: tuple[str, str] | None = None
MODE_LABEL = {"uncached": "uncached", "adacache": "AdaCache fast", "calibrated":
              "calibrated plan 3x",
              "adacache+moreg": "AdaCache fast + MoReg"}


# --------------------------------------------------------------------------- server
def run_prompt(server: HeadlessComfy, prompt: dict) -> dict:
    """Runs ``prompt`` to completion; its /history entry, or an error naming what failed."""
    _, entry = server.run(prompt)
    if entry["status"].get("status_str") != "success":
        raise RuntimeError(f"prompt failed: {json.dumps(entry['status'])[:3000]}")
    return entry


# --------------------------------------------------------------------------- graph
def demo_graph(scene: str, mode: str, seed: int, steps: int, cfg: float, tag: str) -> dict:
    """API-format graph (the same nodes as the demo workflow in workflows/)."""
    g = {
        "1": {"class_type": "UNETLoader",
              "inputs": {"unet_name": MODEL_NAME, "weight_dtype": "default"}},
        "2": {"class_type": "AdaCacheDemoScene", "inputs": {"scene": scene}},
        "3": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": 64, "height": 64, "length": 29, "batch_size": 1}},
        "5": {"class_type": "KSampler",
              "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg,
                         "sampler_name": "euler", "scheduler": "simple",
                         "positive": ["2", 0], "negative": ["2", 1],
                         "latent_image": ["3", 0], "denoise": 1.0}},
        "7": {"class_type": "AdaCacheDemoDecode", "inputs": {"samples": ["5", 0], "upscale": 1}},
        "8": {"class_type": "SaveImage",
              "inputs": {"images": ["7", 0], "filename_prefix": f"demo/{tag}"}},
    }
    if mode != "uncached":
        g["4"] = {"class_type": "AdaCacheApply",
                  "inputs": {"model": ["1", 0], "preset": "fast", "metric": "l1",
                             "metric_blocks": "middle", "start_percent": 0.0,
                             "end_percent": 1.0, "verbose": False,
                             "offload_cache": False}}
        if CODEBOOK_DEMO is not None:
            g["10"] = {"class_type": "AdaCacheCodebookEditor",
                       "inputs": {"thresholds": CODEBOOK_DEMO[0], "rates": CODEBOOK_DEMO[1]}}
            g["4"]["inputs"].update(preset="custom", codebook=["10", 0])
        if mode == "calibrated":  # the plan AdaCache Calibrate saved, picked by name
            g["10"] = {"class_type": "AdaCacheCodebookEditor",
                       "inputs": {"saved": CALIBRATED_NAME}}
            g["4"]["inputs"].update(preset="custom", codebook=["10", 0])
        if mode == "adacache+moreg":
            g["6"] = {"class_type": "AdaCacheMoRegSettings",
                      "inputs": {"enabled": True, **MOREG_DEMO}}
            g["4"]["inputs"]["moreg"] = ["6", 0]
        g["5"]["inputs"]["model"] = ["4", 0]
        g["9"] = {"class_type": "AdaCacheReport",
                  "inputs": {"model": ["4", 0], "latent": ["5", 0]}}
        g["11"] = {"class_type": "SaveImage",
                   "inputs": {"images": ["9", 0], "filename_prefix": f"demo/report_{tag}"}}
    return g


def calibration_graph(scene: str, seed: int, steps: int, cfg: float) -> dict:
    """A calibration run (preset 'calibrate') and AdaCache Calibrate, which saves the plan."""
    g = demo_graph(scene, "adacache", seed, steps, cfg, f"calibration_{seed}")
    g["4"]["inputs"]["preset"] = "calibrate"
    for key in ("8", "9", "11"):  # no frames or report needed from calibration runs
        g.pop(key, None)
    g["12"] = {"class_type": "AdaCacheCalibrate",
               "inputs": {"model": ["4", 0], "latent": ["5", 0], "speed": 3.0, "moreg": False,
                          "name": CALIBRATED_NAME, "runs": "all recorded"}}
    return g


def fill_defaults(graph: dict, object_info: dict) -> dict:
    """Give every widget input not set in ``graph`` its default from /object_info."""
    for node in graph.values():
        info = object_info[node["class_type"]]["input"]
        for section in ("required", "optional"):
            for name, spec in info.get(section, {}).items():
                if name in node["inputs"] or len(spec) < 2 or not isinstance(spec[1], dict):
                    continue
                if "default" in spec[1]:
                    node["inputs"][name] = spec[1]["default"]
    return graph


def prompt_seconds(entry: dict) -> float:
    stamps = {m[0]: m[1].get("timestamp") for m in entry["status"].get("messages", [])}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def load_frames(entry: dict, output_dir: Path) -> np.ndarray:
    images = entry["outputs"]["8"]["images"]
    files = sorted(output_dir / im["subfolder"] / im["filename"] for im in images)
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])  # [T, H, W, 3]


def report_image(entry: dict, output_dir: Path) -> Image.Image | None:
    """The AdaCache Report plot of this prompt (saved by node 11), if it has one."""
    images = entry["outputs"].get("11", {}).get("images", [])
    if not images:
        return None
    im = images[0]
    return Image.open(output_dir / im["subfolder"] / im["filename"]).convert("RGB")


# --------------------------------------------------------------------------- metrics, outputs
def motion(frames: np.ndarray) -> float:
    f = frames.astype(np.float64) / 255
    return float(np.abs(f[1:] - f[:-1]).mean())


def side_by_side_gif(path: Path, videos: list[np.ndarray], labels: list[str], scale: int = 8):
    t = videos[0].shape[0]
    h, w = videos[0].shape[1] * scale, videos[0].shape[2] * scale
    gap, top = 4, 14
    frames = []
    for i in range(t):
        canvas = Image.new("RGB", (len(videos) * (w + gap) - gap, h + top), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for j, (v, label) in enumerate(zip(videos, labels, strict=True)):
            im = Image.fromarray(v[i]).resize((w, h), Image.NEAREST)
            canvas.paste(im, (j * (w + gap), top))
            draw.text((j * (w + gap) + 2, 1), label, fill=(0, 0, 0))
        frames.append(canvas)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=180, loop=0)


def main():
    ap = argparse.ArgumentParser(description="AdaCache demo in a headless ComfyUI")
    ap.add_argument("--scenes", nargs="+", default=["static", "fast motion"],
                    help='any of: static, "slow drift", "fast motion", "camera pan"')
    ap.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per scene")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=ROOT / "demo_output")
    ap.add_argument("--record", action="store_true",
                    help="also write the committed results file (benchmarks/results/demo.json) "
                    "and regenerate the demo figures in README.md and docs/demo.md from it")
    args = ap.parse_args()

    model_file = ROOT / "models" / "diffusion_models" / MODEL_NAME
    if not model_file.exists():
        sys.exit(f"missing {model_file}; train it with scripts/train_demo_model.py")
    if not (COMFY / "main.py").exists():
        sys.exit("missing .host/ComfyUI; run `make setup` (scripts/setup_host.sh)")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    server_dir = Path(tempfile.mkdtemp(prefix="adacache_demo_"))
    server = HeadlessComfy(server_dir, custom_nodes={PACK_DIR_NAME: ROOT},
                           log_path=out / "comfyui.log", demo=True).start()
    results = []
    try:
        print(f"starting ComfyUI on {server.url} (log: {out / 'comfyui.log'}) ...", flush=True)
        print(f"  ready after {server.wait_ready():.0f}s", flush=True)
        info = server.request("/object_info", timeout=120)[1]
        missing = [n for n in ("AdaCacheApply", "AdaCacheDemoScene", "AdaCacheDemoDecode",
                               "AdaCacheReport") if n not in info]
        if missing:
            raise RuntimeError(f"pack nodes not loaded: {missing}; see {out / 'comfyui.log'}")
        if MODEL_NAME not in info["UNETLoader"]["input"]["required"]["unet_name"][0]:
            raise RuntimeError("UNETLoader does not list the demo model")
        # calibration: every step computed on seeds the demo does not use; AdaCache Calibrate
        # saves the plan (user/default/adacache/codebooks/demo.json) for the "calibrated" mode
        for scene in args.scenes:
            for seed in CALIBRATION_SEEDS:
                entry = run_prompt(server, fill_defaults(
                    calibration_graph(scene, seed, args.steps, args.cfg), info))
        calibration = entry["outputs"].get("12", {}).get("text", [""])[0]
        print(f"  calibrated on {len(args.scenes) * len(CALIBRATION_SEEDS)} runs: "
              f"{calibration.splitlines()[0] if calibration else '(no summary)'}", flush=True)
        # warm-up: loads the model once (ComfyUI caches the loader output for later prompts)
        # and runs every mode once at full length so first-call costs stay out of the timings
        for mode in MODES:
            run_prompt(server, fill_defaults(demo_graph(args.scenes[0], mode, 999, args.steps,
                                                      args.cfg, f"warmup_{mode}"), info))
        for scene in args.scenes:
            for seed in range(args.seeds):
                for mode in MODES:
                    tag = f"{scene.replace(' ', '_')}_{mode.replace('+', '_')}_{seed}"
                    graph = fill_defaults(demo_graph(scene, mode, seed, args.steps, args.cfg,
                                                     tag), info)
                    entry = run_prompt(server, graph)
                    summary = entry["outputs"].get("9", {}).get("adacache_trace", [{}])[0]
                    res = {"scene": scene, "seed": seed, "mode": mode,
                           "seconds": prompt_seconds(entry),
                           "frames": load_frames(entry, server.output_dir), "summary": summary,
                           "report": report_image(entry, server.output_dir),
                           "computed": summary.get("computed_steps", args.steps)}
                    results.append(res)
                    print(f"  {scene:<12} seed {seed} {MODE_LABEL[mode]:<22} "
                          f"{res['seconds']:6.2f}s  computed {res['computed']}/{args.steps}",
                          flush=True)
    finally:
        server.stop()
        shutil.rmtree(server_dir, ignore_errors=True)

    # per-run metrics against the uncached output of the same scene and seed
    base = {(r["scene"], r["seed"]): r for r in results if r["mode"] == "uncached"}
    for r in results:
        ref = base[(r["scene"], r["seed"])]["frames"]
        r["psnr"] = psnr(r["frames"], ref) if r["mode"] != "uncached" else None
        r["ssim"] = ssim(r["frames"], ref) if r["mode"] != "uncached" else None
        r["motion"] = motion(r["frames"])

    table = []
    for scene in args.scenes:
        t_unc = sum(r["seconds"] for r in results
                    if r["scene"] == scene and r["mode"] == "uncached")
        for mode in MODES:
            rs = [r for r in results if r["scene"] == scene and r["mode"] == mode]
            t_mode = sum(r["seconds"] for r in rs)
            finite = [r["psnr"] for r in rs if r["psnr"] is not None and np.isfinite(r["psnr"])]
            table.append({
                "scene": scene, "mode": mode, "seeds": len(rs),
                "seconds_per_run": t_mode / len(rs),
                "speedup": t_unc / t_mode if t_mode else None,
                "computed_steps_mean": statistics.mean(r["computed"] for r in rs),
                "computed_steps": [r["computed"] for r in rs],
                "psnr": statistics.mean(finite) if finite else (
                    None if mode == "uncached" else float("inf")),
                "ssim": statistics.mean(r["ssim"] for r in rs) if mode != "uncached" else None,
                "motion": statistics.mean(r["motion"] for r in rs),
            })

    # outputs: GIFs (seed 0), trace plots (seed 0), summary
    for scene in args.scenes:
        vids = {r["mode"]: r["frames"] for r in results if r["scene"] == scene and r["seed"] == 0}
        side_by_side_gif(out / f"{scene.replace(' ', '_')}.gif", [vids[m] for m in MODES],
                         [MODE_LABEL[m] for m in MODES])
        for r in results:
            if r["scene"] == scene and r["seed"] == 0 and r.get("report") is not None:
                r["report"].save(out / f"trace_{scene.replace(' ', '_')}_"
                                 f"{r['mode'].replace('+', '_')}.png")
    header = ("| scene | mode | s/run | speedup | computed steps (mean; per seed) | "
              "PSNR dB | SSIM | motion |")
    lines = [header, "|" + "---|" * 8]
    for row in table:
        lines.append(
            f"| {row['scene']} | {MODE_LABEL[row['mode']]} | {row['seconds_per_run']:.2f} | "
            f"{fmt(row['speedup'])}x | {row['computed_steps_mean']:.1f}; "
            f"{', '.join(map(str, row['computed_steps']))} | {fmt(row['psnr'])} | "
            f"{fmt(row['ssim'], '{:.3f}')} | {row['motion']:.4f} |")
    md = "\n".join(lines)
    note = (f"\n\n{args.steps} steps, euler/simple, cfg {args.cfg}, seeds 0..{args.seeds - 1}; "
            "speedup = uncached wall time / this mode's wall time (server-side, same seeds); "
            "PSNR/SSIM against the uncached frames of the same seed; motion = mean |frame "
            "difference| of the decoded 16x16 frames (0..1).\n")
    (out / "summary.md").write_text("# AdaCache demo summary\n\n" + md + note)
    runs = [{k: v for k, v in r.items() if k not in ("frames", "report")} for r in results]
    (out / "summary.json").write_text(json.dumps(
        {"steps": args.steps, "cfg": args.cfg, "seeds": args.seeds, "table": table,
         "runs": runs}, indent=1, default=float))
    print("\n" + md + note)
    if args.record:
        import doc_figures

        doc_figures.RESULTS.write_text(json.dumps(
            {"command": doc_figures.COMMAND, "steps": args.steps, "cfg": args.cfg,
             "seeds": args.seeds, "scenes": args.scenes,
             "calibration": calibration.splitlines()[0] if calibration else None,
             "table": table}, indent=1, default=float) + "\n")
        print(f"recorded {doc_figures.RESULTS.relative_to(ROOT)}; regenerated: "
              f"{', '.join(doc_figures.update()) or 'nothing (unchanged)'}")
    print(f"demo finished in {time.time() - t_start:.0f}s; outputs in {out}{os.sep}:")
    for p in sorted(out.iterdir()):
        print(f"  {p.name}")


if __name__ == "__main__":
    main()
