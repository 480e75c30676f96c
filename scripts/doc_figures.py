"""The demo's figures in README.md and docs/demo.md, generated from the committed results file.

``make demo-record`` (``scripts/demo.py`` on all four scenes with ``--record``) writes
``benchmarks/results/demo.json`` and then rewrites every marked block in the two docs from it:

    <!-- demo:NAME -->generated text<!-- /demo:NAME -->

``tests/test_doc_figures.py`` checks that the committed docs hold exactly what the committed
results file renders to (it never reruns the demo).

    .venv/bin/python scripts/doc_figures.py [--check]   # rewrite the blocks, or only check
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo.json"
DOCS = (ROOT / "README.md", ROOT / "docs" / "demo.md")
COMMAND = ('make demo-record  # = scripts/demo.py --scenes static "slow drift" "fast motion" '
           '"camera pan" --record')
LABEL = {"uncached": "uncached", "adacache": "AdaCache fast",
         "adacache+moreg": "AdaCache fast + MoReg", "calibrated": "calibrated plan 3x"}
_BLOCK = re.compile(r"<!-- demo:([a-z0-9-]+) -->(.*?)<!-- /demo:\1 -->", re.S)
# the quality benchmark's focused runs (make bench-zoo) whose plan figures the README shows:
# (model, steps, the command that writes benchmarks/results/<stem>.json)
BENCH_RUNS = (
    ("hunyuan", 30, "benchmarks/bench_quality.py --model hunyuan --focus"),
    ("cosmos", 30, "benchmarks/bench_quality.py --model cosmos --focus"),
    ("hunyuan", 50, "benchmarks/bench_quality.py --model hunyuan --focus --steps 50 "
                    "--hindsight 0"),
    ("demo", 30, "benchmarks/bench_quality.py --model demo --focus"),
)
BENCH_LABEL = {"hunyuan": "HunyuanVideo (zoo)", "cosmos": "Cosmos predict2 (zoo)",
               "demo": "Wan 2.1 (demo, tuned on)"}


def _num(v, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return spec.format(v)


def _steps(v: float) -> str:
    """Mean computed steps as the docs write them: 8, 10.8."""
    return f"{round(v, 1):g}"


def _pair(a: float, b: float) -> str:
    return _steps(a) if _steps(a) == _steps(b) else f"{_steps(a)} and {_steps(b)}"


def _rows(results: dict) -> dict[tuple[str, str], dict]:
    return {(r["scene"], r["mode"]): r for r in results["table"]}


def blocks(results: dict) -> dict[str, str]:
    """Every generated block's text, by name."""
    rows, scenes, steps = _rows(results), results["scenes"], results["steps"]
    out = {}

    lines = ["| scene | AdaCache fast: computed steps | + MoReg: computed steps | "
             "PSNR fast → +MoReg (dB) |", "| --- | --- | --- | --- |"]
    for scene in scenes:
        fast, moreg = rows[scene, "adacache"], rows[scene, "adacache+moreg"]
        lines.append(f"| {scene} | {_steps(fast['computed_steps_mean'])} | "
                     f"{_steps(moreg['computed_steps_mean'])} | {_num(fast['psnr'], '{:.1f}')} → "
                     f"{_num(moreg['psnr'], '{:.1f}')} |")
    out["moreg-table"] = "\n\n" + "\n".join(lines) + "\n\n"

    cal = [rows[s, "calibrated"] for s in ("static", "fast motion")]
    fast = [rows[s, "adacache"] for s in ("static", "fast motion")]
    out["calibrated"] = (
        f"the calibrated plan computed {_steps(cal[0]['computed_steps_mean'])} and "
        f"{_steps(cal[1]['computed_steps_mean'])} of {steps} steps (static, fast motion) at "
        f"{_num(cal[0]['psnr'], '{:.1f}')} and {_num(cal[1]['psnr'], '{:.1f}')} dB, against "
        f"{_pair(fast[0]['computed_steps_mean'], fast[1]['computed_steps_mean'])} steps at "
        f"{_num(fast[0]['psnr'], '{:.1f}')} and {_num(fast[1]['psnr'], '{:.1f}')} dB "
        "for the paper's fast preset"
    )

    speedups = [rows[s, "adacache"]["speedup"] for s in scenes]
    fast_steps = sorted({_steps(rows[s, "adacache"]["computed_steps_mean"]) for s in scenes})
    out["fast-speedup"] = (f"{min(speedups):.1f}–{max(speedups):.1f}x for "
                           f"{'/'.join(fast_steps)} of {steps} computed steps")
    out["fast-steps"] = f"{' or '.join(fast_steps)} of {steps} steps"
    stack = [steps / rows[s, "adacache"]["computed_steps_mean"] for s in scenes]
    out["fast-stack"] = (f"{min(stack):.2f}x" if round(min(stack), 2) == round(max(stack), 2)
                         else f"{min(stack):.2f}–{max(stack):.2f}x")

    moved = []
    for scene in ("fast motion", "camera pan", "static", "slow drift"):
        a, b = rows[scene, "adacache"], rows[scene, "adacache+moreg"]
        moved.append(f"{scene} {_steps(a['computed_steps_mean'])} → "
                     f"{_steps(b['computed_steps_mean'])}")
    a, b = rows["fast motion", "adacache"], rows["fast motion", "adacache+moreg"]
    out["moreg-steps"] = (
        f"{', '.join(moved)}. PSNR/SSIM on fast motion: {_num(a['psnr'], '{:.2f}')} → "
        f"{_num(b['psnr'], '{:.2f}')} dB, {_num(a['ssim'], '{:.3f}')} → "
        f"{_num(b['ssim'], '{:.3f}')}"
    )

    lines = ["| scene | mode | s/run | speedup | computed steps (per seed) | PSNR dB | SSIM |",
             "|---|---|---|---|---|---|---|"]
    for scene in scenes:
        for mode in LABEL:
            r = rows.get((scene, mode))
            if r is None:
                continue
            lines.append(
                f"| {scene} | {LABEL[mode]} | {r['seconds_per_run']:.2f} | "
                f"{_num(r['speedup'], '{:.2f}')}x | "
                f"{', '.join(str(c) for c in r['computed_steps'])} | "
                f"{_num(r['psnr'], '{:.2f}')} | {_num(r['ssim'], '{:.3f}')} |")
    out["table"] = "\n\n" + "\n".join(lines) + "\n\n"
    out["command"] = f"`{COMMAND.split('  #')[0]}`"
    out.update(bench_blocks())
    return out


def bench_stem(model: str, steps: int) -> str:
    return "bench_quality" if (model, steps) == ("demo", 30) else (
        f"bench_quality_{model}" + ("" if steps == 30 else f"_{steps}"))


def bench_blocks() -> dict[str, str]:
    """The calibrated plan per model and speed, from the committed focused benchmark runs."""
    lines = ["| model, steps | plan target | block stack ran (speedup) | PSNR dB | vs uniform, "
             "same steps | better than uniform | classes worse than uniform | command |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for model, steps, command in BENCH_RUNS:
        path = RESULTS.parent / f"{bench_stem(model, steps)}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        for t in data["table"]:
            if not t["method"].startswith("calibrated plan") or "," in t["method"] or (
                    "MoReg" in t["method"]) or "uniform_psnr" not in t:
                continue
            worse = [s for s, d in t.get("uniform_by_scene", {}).items() if d < 0]
            lines.append(
                f"| {BENCH_LABEL.get(model, model)}, {steps} | "
                f"{t['method'].removeprefix('calibrated plan ')} | {t['computed']:.1f} "
                f"({t['block_speedup']:.2f}x) | {t['psnr']:.2f} | {t['vs_uniform']:+.2f} dB | "
                f"{t['wins']}/{t['samples']} | {', '.join(worse) or 'none'} | `{command}` |")
    return {"plan-table": "\n\n" + "\n".join(lines) + "\n\n"}


def load(path: Path = RESULTS) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def render(text: str, generated: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in generated:
            raise KeyError(f"unknown demo block {name!r}")
        return f"<!-- demo:{name} -->{generated[name]}<!-- /demo:{name} -->"

    return _BLOCK.sub(one, text)


def drift(results: dict | None = None, docs=DOCS) -> list[str]:
    """The docs whose generated blocks differ from what ``results`` renders to."""
    generated = blocks(results if results is not None else load())
    return [str(p.relative_to(ROOT)) for p in docs
            if render(p.read_text(encoding="utf-8"), generated) != p.read_text(encoding="utf-8")]


def update(results: dict | None = None, docs=DOCS) -> list[str]:
    """Rewrites the generated blocks of ``docs``; the docs it changed."""
    generated = blocks(results if results is not None else load())
    changed = []
    for p in docs:
        text = p.read_text(encoding="utf-8")
        new = render(text, generated)
        if new != text:
            p.write_text(new, encoding="utf-8")
            changed.append(str(p.relative_to(ROOT)))
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = ap.parse_args()
    if args.check:
        stale = drift()
        print("stale: " + ", ".join(stale) if stale else "docs match " + str(RESULTS))
        return 1 if stale else 0
    print("updated: " + (", ".join(update()) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
