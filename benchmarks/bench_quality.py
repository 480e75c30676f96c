"""Quality benchmark on the demo model and the validation zoo: is the schedule worth its compute?

``make bench-quality`` (the demo model, about 10 min on the 2-core dev machine). In-process,
real ComfyUI classes and samplers (comfy.sample.sample, euler/simple, cfg 3, 30 steps by
default). ``--model`` picks the model: ``demo`` (default), a zoo model (``hunyuan``,
``cosmos``: other families, trained on other motion data, see docs/zoo.md), a comma-separated
list, or ``all``; models are loaded through ComfyUI's loader by ``benchmarks/zoo.py``, and the
scene classes are the ones that model was trained on. ``--steps`` sets the step count.

1. Calibration: every scene class x seeds 0..3 sampled with AdaCache Apply's preset
   ``calibrate`` (every step computed; per-step, per-gap changes and motion recorded).
2. Held out: every scene class x seeds 100..103, uncached (the reference), and each method.
   PSNR/SSIM of the decoded frames against the uncached frames of the same seed.
3. For every AdaCache method and every sample, the *uniform* schedule with exactly the same
   computed steps (same residual reuse, evenly spaced between the always-computed first two
   and last two steps): the paired difference is what the adaptivity is worth.
4. Native EasyCache / LazyCache from the host at a few thresholds. EasyCache adds its cached
   difference in place into the model input, which ComfyUI reuses between calls in fp32; it
   gets a copy of its input here (a DIFFUSION_MODEL wrapper outside it), which is what bf16
   users get.
5. A hindsight search (local search over which steps to compute, same budget and mechanism,
   scored against the reference itself) on one sample per class, at the budgets of the
   calibrated plan: the best schedule in reach, as a reference.

Writes ``benchmarks/results/bench_quality_<model>[_<steps>].{md,json}`` and
``..._pareto.png`` (PSNR against block-stack speedup and against wall-time speedup); the demo
at 30 steps keeps the names ``bench_quality.{md,json}`` and ``bench_quality_pareto.png``. Wall
times are medians of the interleaved per-run times in this one process (ratios to uncached;
the machine is shared, so expect noise).

    .venv/bin/python benchmarks/bench_quality.py [--model demo|hunyuan|cosmos|all]
        [--steps 30] [--scenes "static,rotation"] [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import fixed_schedule, jsonable, load_module, psnr, ssim  # noqa: E402

STEPS, CFG = 30, 3.0
CAL_SEEDS = (0, 1, 2, 3)
HELD_SEEDS = (100, 101, 102, 103)
PLAN_SPEEDS = (2.0, 3.0, 4.0, 5.0, 6.0)
PLAN_MOREG_SPEEDS = (2.0, 3.0, 4.0)


def frames(rgb: np.ndarray) -> np.ndarray:
    """[B, C, T, H, W] uint8 (the first video) -> [T, H, W, C]."""
    return rgb[0].transpose(1, 2, 3, 0)


def uniform_schedule(computed: int, n: int) -> tuple[int, ...]:
    """``computed`` steps: the first two, the last two, the rest evenly spaced between."""
    interior = computed - 4
    steps = {0, 1, n - 2, n - 1}
    if interior > 0:
        for x in np.linspace(1, n - 2, interior + 2)[1:-1]:
            steps.add(int(round(x)))
    return tuple(sorted(steps))


class Bench:
    def __init__(self, name: str = "demo", steps: int = STEPS):
        host = load_module("adacache_comfy_host", ROOT / "tests" / "comfy_host.py")
        host.boot_host()
        host.import_pack()
        from comfyui_adacache import adacache
        from comfyui_adacache.nodes.patch import apply_adacache

        zoo = load_module("adacache_zoo", ROOT / "benchmarks" / "zoo.py")
        self.ac = adacache
        self.apply = apply_adacache
        self.zoo = zoo.load(name)  # through ComfyUI's loader; scenes of that model's world
        self.name, self.steps = name, steps
        self.model = self.zoo.model
        self.patched: dict = {}
        self.inner_calls: list[float] = []

    def adacache(self, **config):
        key = tuple(sorted(config.items(), key=lambda kv: kv[0]))
        if key not in self.patched:
            self.patched[key] = self.apply(self.model, self.ac.AdaCacheConfig(**config))
        return self.patched[key]

    def sample(self, model, scene: str, seed: int):
        start = time.perf_counter()
        out = self.zoo.sample(model, scene, seed, steps=self.steps, cfg=CFG)
        seconds = time.perf_counter() - start
        rgb = (self.zoo.decode(out).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
        handle = model.model_options.get("transformer_options", {}).get("adacache_handle")
        return rgb, (handle.summary_for(out) if handle is not None else None), seconds

    def fixed(self, scene, seed, steps):
        return self.sample(self.adacache(preset="custom", codebook=fixed_schedule(steps)),
                           scene, seed)

    def native(self, kind: str, threshold: float):
        """Native EasyCache / LazyCache, given a copy of its input; counts computed steps."""
        import comfy.patcher_extension as pe
        from comfy_extras import nodes_easycache

        def copy_input(executor, *args, **kwargs):
            return executor(args[0].clone(), *args[1:], **kwargs)

        def count_inner(executor, *args, **kwargs):
            options = args[-1] if isinstance(args[-1], dict) else kwargs.get(
                "transformer_options", {})
            self.inner_calls.append(float(options["sigmas"].max()))
            return executor(*args, **kwargs)

        base = self.model.clone()
        wrapper = pe.WrappersMP.DIFFUSION_MODEL
        base.add_wrapper_with_key(wrapper, "bench_copy_input", copy_input)
        node = nodes_easycache.EasyCacheNode if kind == "easycache" else \
            nodes_easycache.LazyCacheNode
        model = node.execute(base, reuse_threshold=threshold, start_percent=0.15,
                             end_percent=0.95, verbose=False).result[0]
        model.add_wrapper_with_key(wrapper, "bench_count_inner", count_inner)
        return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo",
                    help="demo, hunyuan, cosmos, a comma-separated list, or all")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--scenes", default=None,
                    help="comma-separated subset of the model's scene classes (default: all)")
    ap.add_argument("--quick", action="store_true", help="2 held-out seeds, no hindsight")
    ap.add_argument("--focus", action="store_true",
                    help="the calibrated plan only (2-6x, 3x + MoReg, paper fast), calibration "
                    "on seeds 0-1, 2 held-out seeds, hindsight on --hindsight classes, and the "
                    "plan calibrated on 2 runs against all: the issue-13 targets per model")
    ap.add_argument("--hindsight", type=int, default=None,
                    help="classes searched in hindsight (default: all; 2 with --focus)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = load_module("adacache_zoo", ROOT / "benchmarks" / "zoo.py")
    for name in zoo.resolve(args.model):
        run(name, args)


def result_stem(name: str, steps: int) -> str:
    """bench_quality_<model>[_<steps>]; the demo at 30 steps keeps the historical name."""
    if name == "demo" and steps == STEPS:
        return "bench_quality"
    return f"bench_quality_{name}" + ("" if steps == STEPS else f"_{steps}")


def run(model_name: str, args):
    t0 = time.time()
    b = Bench(model_name, args.steps)
    scenes = b.zoo.scenes
    if args.scenes:
        picked = [s.strip() for s in args.scenes.split(",") if s.strip()]
        unknown = [s for s in picked if s not in scenes]
        if unknown:
            raise SystemExit(f"{model_name} has no scene class {unknown}; it has {scenes}")
        scenes = picked
    focus = getattr(args, "focus", False)
    held_seeds = HELD_SEEDS[:2] if args.quick or focus else HELD_SEEDS
    cal_seeds = CAL_SEEDS[:2] if focus else CAL_SEEDS

    # 1. calibration through the real preset
    samples = []
    for scene in scenes:
        for seed in cal_seeds:
            _, summary, _ = b.sample(b.adacache(preset="calibrate"), scene, seed)
            samples.append(b.ac.CalibrationSample.from_dict(summary["calibration_sample"]))
    print(f"calibrated on {len(samples)} runs", flush=True)
    cal_distances = [d for s in samples for d in s.distances if d]

    # 2. references
    held = [(scene, seed) for scene in scenes for seed in held_seeds]
    refs = {}
    for key in held:
        b.sample(b.model, *key)  # warm-up of this conditioning
        refs[key], _, _ = b.sample(b.model, *key)

    # 3. methods
    methods: dict[str, dict] = {}
    for preset in ("fast",) if focus else ("fast", "medium", "slow"):
        methods[f"paper {preset}"] = {"config": {"preset": preset}}
    if not focus:
        methods["paper fast + MoReg (reference constants)"] = {
            "config": {"preset": "fast", "moreg": b.ac.MoRegSettings()}}
    # a model on which calibration cannot fit (e.g. every recorded distance 0) is reported,
    # not fatal: the other methods still run
    failures = []
    supplement = b.ac.calibrated_codebook(cal_distances, (6, 5, 4, 3, 2, 1))
    if focus:
        pass
    elif supplement is not None:
        methods["supplement A.2 codebook"] = {"config": {"preset": "custom",
                                                         "codebook": supplement}}
    else:
        failures.append("supplement A.2 codebook: no codebook from the calibration distances "
                        f"({len(cal_distances)} nonzero)")
    plans = {}
    for speed in PLAN_SPEEDS:
        try:  # a plan calibrated with MoReg carries it, so the plain plan is fitted without
            result = b.ac.calibrate(samples, speed)
            with_moreg = b.ac.calibrate(samples, speed, moreg=True)
        except b.ac.CodebookError as e:
            failures.append(f"calibrated plan {speed:g}x: {e}")
            continue
        plans[speed] = with_moreg
        methods[f"calibrated plan {speed:g}x"] = {
            "config": {"preset": "custom", "plan": result.plan}, "plan": speed}
        if speed in PLAN_MOREG_SPEEDS and (not focus or speed == 3.0):
            methods[f"calibrated plan {speed:g}x + MoReg"] = {
                "config": {"preset": "custom", "plan": with_moreg.plan,
                           "moreg": with_moreg.moreg},
                "plan": speed}
    if focus:  # calibrated on 2 runs (the first seed of the first and last class) only
        few = [samples[0], samples[-1]]
        try:
            methods["calibrated plan 3x, 2 calibration runs"] = {"config": {
                "preset": "custom", "plan": b.ac.calibrate(few, 3.0).plan}, "plan": 3.0}
        except b.ac.CodebookError as e:
            failures.append(f"calibrated plan 3x on 2 runs: {e}")
    for kind, thresholds in () if focus else (("easycache", (0.1, 0.2, 0.3)),
                                               ("lazycache", (0.2, 0.5))):
        for threshold in thresholds:
            methods[f"native {kind} {threshold:g}"] = {"native": (kind, threshold)}

    rows = []
    for method_name, method in methods.items():
        model = (b.native(*method["native"]) if "native" in method
                 else b.adacache(**method["config"]))
        for scene, seed in held:
            ref = refs[(scene, seed)]
            _, _, uncached_seconds = b.sample(b.model, scene, seed)  # paired, for the wall ratio
            b.inner_calls.clear()
            rgb, summary, seconds = b.sample(model, scene, seed)
            if summary is not None:
                computed = summary["computed_steps"]
                pattern = summary["pattern"]
            else:  # native: steps whose diffusion model ran
                sigmas = sorted({round(s, 6) for s in b.inner_calls}, reverse=True)
                computed, pattern = len(sigmas), None
            row = {"method": method_name, "scene": scene, "seed": seed, "computed": computed,
                   "pattern": pattern, "psnr": psnr(rgb, ref),
                   "ssim": ssim(frames(rgb), frames(ref)),
                   "wall_ratio": uncached_seconds / seconds}
            if "native" not in method:
                uni, _, _ = b.fixed(scene, seed, uniform_schedule(computed, b.steps))
                row["uniform_psnr"] = psnr(uni, ref)
                row["uniform_ssim"] = ssim(frames(uni), frames(ref))
            rows.append(row)
        print(f"{method_name}: done ({time.time() - t0:.0f}s)", flush=True)

    # 5. hindsight search on one sample per class, at the plan's budgets
    hindsight = []
    searched = args.hindsight if args.hindsight is not None else (2 if focus else len(scenes))
    if not args.quick:
        for speed in (3.0, 4.0):
            for scene in scenes[:searched]:
                seed = held_seeds[0]
                plan_row = next((r for r in rows if r["method"] == f"calibrated plan {speed:g}x"
                                 and r["scene"] == scene and r["seed"] == seed), None)
                if plan_row is None:
                    continue
                best, score, evals = search(b, scene, seed, plan_row["computed"],
                                            refs[(scene, seed)])
                hindsight.append({"scene": scene, "seed": seed, "speed": speed,
                                  "computed": plan_row["computed"], "schedule": best,
                                  "psnr": score, "plan_psnr": plan_row["psnr"],
                                  "uniform_psnr": plan_row["uniform_psnr"], "evals": evals})
                print(f"hindsight {speed:g}x {scene}: {score:.2f} dB ({evals} runs)", flush=True)

    report(args.out, rows, hindsight, plans, scenes, held, time.time() - t0, b.name, b.steps,
           failures, cal_seeds)


def search(b: Bench, scene, seed, computed, ref, passes=3):
    """Local search over every compute step but step 0 (the ends included), from the uniform
    schedule, scored against the reference itself."""
    current = list(uniform_schedule(computed, b.steps))
    best = psnr(b.fixed(scene, seed, current)[0], ref)
    evals = 1
    for _ in range(passes):
        improved = False
        for i in range(1, len(current)):
            for delta in (-3, -2, -1, 1, 2, 3):
                candidate = list(current)
                candidate[i] += delta
                upper = candidate[i + 1] if i + 1 < len(candidate) else b.steps
                if not candidate[i - 1] < candidate[i] < upper:
                    continue
                score = psnr(b.fixed(scene, seed, candidate)[0], ref)
                evals += 1
                if score > best + 1e-9:
                    best, current, improved = score, candidate, True
        if not improved:
            break
    return current, best, evals


def _mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def summarise(rows, scenes, steps):
    table = []
    for name in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == name]
        entry = {
            "method": name,
            "computed": _mean(r["computed"] for r in rs),
            "block_speedup": steps / _mean(r["computed"] for r in rs),
            "wall_speedup": statistics.median(r["wall_ratio"] for r in rs),
            "psnr": _mean(r["psnr"] for r in rs),
            "ssim": _mean(r["ssim"] for r in rs),
            "computed_by_scene": {s: _mean(r["computed"] for r in rs if r["scene"] == s)
                                  for s in scenes},
            "psnr_by_scene": {s: _mean(r["psnr"] for r in rs if r["scene"] == s)
                              for s in scenes},
        }
        if "uniform_psnr" in rs[0]:
            entry["uniform_psnr"] = _mean(r["uniform_psnr"] for r in rs)
            entry["vs_uniform"] = entry["psnr"] - entry["uniform_psnr"]
            entry["wins"] = sum(r["psnr"] > r["uniform_psnr"] for r in rs)
            entry["uniform_by_scene"] = {
                s: _mean(r["psnr"] - r["uniform_psnr"] for r in rs if r["scene"] == s)
                for s in scenes}
            entry["samples"] = len(rs)
        table.append(entry)
    return table


def report(out: Path, rows, hindsight, plans, scenes, held, seconds, name="demo", steps=STEPS,
           failures=(), cal_seeds=CAL_SEEDS):
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(name, steps)
    table = summarise(rows, scenes, steps)
    by_name = {t["method"]: t for t in table}
    lines = [
        "| method | computed steps (mean) | by scene (" + ", ".join(scenes) + ") | block-stack "
        "speedup | wall speedup | PSNR dB | SSIM | uniform, same steps: PSNR | vs uniform | "
        "better than uniform |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in table:
        uniform = (f"{t['uniform_psnr']:.2f} | {t['vs_uniform']:+.2f} | "
                   f"{t['wins']}/{t['samples']}") if "uniform_psnr" in t else "- | - | -"
        lines.append(
            f"| {t['method']} | {t['computed']:.2f} | "
            + ", ".join(f"{v:.1f}" for v in t["computed_by_scene"].values())
            + f" | {t['block_speedup']:.2f}x | {t['wall_speedup']:.2f}x | {t['psnr']:.2f} | "
            f"{t['ssim']:.3f} | {uniform} |"
        )
    hs_lines = []
    if hindsight:
        hs_lines = ["| speed | scene | computed | uniform dB | calibrated plan dB | hindsight dB | "
                    "plan - hindsight |", "|---|---|---:|---:|---:|---:|---:|"]
        for h in hindsight:
            hs_lines.append(
                f"| {h['speed']:g}x | {h['scene']} | {h['computed']} | {h['uniform_psnr']:.2f} | "
                f"{h['plan_psnr']:.2f} | {h['psnr']:.2f} | {h['plan_psnr'] - h['psnr']:+.2f} |")
    targets = [f"FAILED: {f}" for f in failures] + check_targets(by_name, hindsight, scenes,
                                                                  steps)
    command = ("`make bench-quality`" if stem == "bench_quality" else
               f"`benchmarks/bench_quality.py --model {name} --steps {steps}`")
    md = [f"# Quality benchmark ({name} model, held-out seeds)", "",
          f"{command}: {len(held)} held-out samples ({len(scenes)} scene classes x "
          f"seeds {sorted({s for _, s in held})}), calibration on seeds {list(cal_seeds)}; "
          f"{steps} steps euler/simple, cfg {CFG}; PSNR/SSIM of decoded frames against the "
          f"uncached output of the same seed; wall speedup = median per-sample ratio of uncached "
          f"to method wall time in this process ({seconds:.0f} s in all).", "",
          *lines, "", "Hindsight search (one sample per class, same budget as the plan):", "",
          *hs_lines, "", "Targets:", "", *[f"- {t}" for t in targets], "",
          f"![pareto]({stem}_pareto.png)", ""]
    (out / f"{stem}.md").write_text("\n".join(md))
    (out / f"{stem}.json").write_text(json.dumps(jsonable(
        {"model": name, "steps": steps, "table": table, "rows": rows, "hindsight": hindsight,
         "targets": targets,
         "plans": {str(k): v.plan.to_dict() for k, v in plans.items()}}), indent=1))
    pareto(out / f"{stem}_pareto.png", table, name, steps)
    print("\n".join(md))


def check_targets(by_name, hindsight, scenes, steps=STEPS) -> list[str]:
    out = []
    for speed in PLAN_SPEEDS:
        t = by_name.get(f"calibrated plan {speed:g}x")
        if t:
            ok = t["vs_uniform"] >= 1.0 and t["wins"] >= 0.75 * t["samples"]
            out.append(f"{'met' if ok else 'MISSED'}: calibrated plan {speed:g}x vs uniform at "
                       f"equal computed steps {t['vs_uniform']:+.2f} dB, better on "
                       f"{t['wins']}/{t['samples']} (target >= +1 dB and >= 3/4)")
    for speed in (3.0, 4.0):
        diffs = [h["plan_psnr"] - h["psnr"] for h in hindsight if h["speed"] == speed]
        if diffs:
            med = statistics.median(diffs)
            out.append(f"{'met' if med >= -1 else 'MISSED'}: calibrated plan {speed:g}x is "
                       f"{med:+.2f} dB (median) from the hindsight search (target within 1 dB)")
    for speed in PLAN_SPEEDS:
        t = by_name.get(f"calibrated plan {speed:g}x")
        if t and t.get("uniform_by_scene"):
            worse = {s: round(d, 2) for s, d in t["uniform_by_scene"].items() if d < 0}
            out.append(f"{'met' if not worse else 'MISSED'}: calibrated plan {speed:g}x, no "
                       f"class worse than uniform (worse: {worse or 'none'})")
            achieved = t["block_speedup"]
            out.append(f"{'met' if abs(achieved / speed - 1) <= 0.05 else 'MISSED'}: calibrated "
                       f"plan {speed:g}x achieved {achieved:.2f}x (target within 5 %)")
    few, all_runs = by_name.get("calibrated plan 3x, 2 calibration runs"), by_name.get(
        "calibrated plan 3x")
    if few and all_runs:
        gap = few["psnr"] - all_runs["psnr"]
        out.append(f"{'met' if gap >= -0.5 else 'MISSED'}: calibrated on 2 runs, the plan at "
                   f"3x is {gap:+.2f} dB from the one calibrated on all (target within 0.5 dB)")
    fastest = [t for t in by_name.values() if t["method"].startswith("calibrated plan")
               and t["computed"] <= 6.0]
    if fastest:
        t = min(fastest, key=lambda t: -t["psnr"])
        out.append(f"met: {t['method']} computes {t['computed']:.2f}/{steps} steps at "
                   f"{t['psnr']:.2f} dB")
    static, fast = scenes[0], ("fast motion" if "fast motion" in scenes else scenes[-1])
    for speed in PLAN_SPEEDS:
        t = by_name.get(f"calibrated plan {speed:g}x")
        if t:
            a, c = t["computed_by_scene"][static], t["computed_by_scene"][fast]
            out.append(f"{'met' if a != c else 'MISSED'}: without MoReg at {speed:g}x, "
                       f"{static} computes {a:.2f} and {fast} {c:.2f} steps")
    for speed in PLAN_MOREG_SPEEDS:
        m, p = by_name.get(f"calibrated plan {speed:g}x + MoReg"), by_name.get(
            f"calibrated plan {speed:g}x")
        if not (m and p):
            continue
        extra_static = m["computed_by_scene"][static] - p["computed_by_scene"][static]
        out.append(f"{'met' if extra_static <= 0 else 'MISSED'}: MoReg at {speed:g}x adds "
                   f"{extra_static:+.2f} computed steps on {static}")
        order = sorted(scenes, key=lambda s: m["computed_by_scene"][s])
        counts = ", ".join(f"{m['computed_by_scene'][s]:.2f}" for s in order)
        out.append(f"MoReg at {speed:g}x: computed steps order the classes {order} ({counts})")
        for scene in scenes[1:]:
            gain = matched_gain(by_name, speed, scene)
            if gain is not None:
                out.append(f"{'met' if gain >= 0 else 'MISSED'}: MoReg at {speed:g}x on "
                           f"{scene}: {gain:+.2f} dB against AdaCache alone at matched compute "
                           "(interpolated between the plan's speeds)")
    return out


def matched_gain(by_name, speed, scene):
    """MoReg's PSNR on ``scene`` minus the plan without MoReg interpolated at the same compute."""
    m = by_name[f"calibrated plan {speed:g}x + MoReg"]
    curve = sorted((by_name[f"calibrated plan {s:g}x"]["computed_by_scene"][scene],
                    by_name[f"calibrated plan {s:g}x"]["psnr_by_scene"][scene])
                   for s in PLAN_SPEEDS if f"calibrated plan {s:g}x" in by_name)
    x = m["computed_by_scene"][scene]
    for (x0, y0), (x1, y1) in zip(curve[:-1], curve[1:], strict=True):
        if x0 <= x <= x1 and x1 > x0:
            return m["psnr_by_scene"][scene] - (y0 + (y1 - y0) * (x - x0) / (x1 - x0))
        if x0 == x == x1:
            return m["psnr_by_scene"][scene] - y0
    return None


def pareto(path: Path, table, model_name="demo", steps=STEPS):
    """Two panels: PSNR against block-stack speedup and against wall-time speedup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"paper": ("tab:blue", "o"), "supplement": ("tab:purple", "D"),
              "calibrated": ("tab:green", "o"), "native": ("tab:red", "^")}
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.0), sharey=True)
    for ax, key, label in ((axes[0], "block_speedup", "block-stack speedup (steps / computed)"),
                           (axes[1], "wall_speedup", "wall-time speedup (measured, this CPU)")):
        for family, (color, marker) in styles.items():
            for moreg in (False, True):
                pts = sorted((t[key], t["psnr"], t["method"]) for t in table
                             if t["method"].split()[0] == family
                             and ("MoReg" in t["method"]) == moreg)
                if not pts:
                    continue
                name = {"paper": "paper presets", "supplement": "supplement A.2 codebook",
                        "calibrated": "calibrated plan (ours)",
                        "native": "native EasyCache / LazyCache"}[family]
                line = "-" if family == "calibrated" and key == "block_speedup" else "none"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                        color=color, linestyle=line,
                        markerfacecolor="none" if moreg else color,
                        label=name + (" + MoReg" if moreg else ""))
        if key == "block_speedup":
            uni = sorted((t[key], t["uniform_psnr"]) for t in table if "uniform_psnr" in t)
            ax.plot([u[0] for u in uni], [u[1] for u in uni], "x", color="grey",
                    label="uniform schedule, same computed steps")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR dB vs uncached (held-out seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle(f"AdaCache on the {model_name} model, {steps} steps, held-out seeds: quality "
                 "against speed")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
