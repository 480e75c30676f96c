"""SkipLayerGuidance with AdaCache: what caching costs with and without an SLG pass.

Demo model, 30 steps, preset fast, SLG (ComfyUI's SkipLayerGuidanceDiT, scale 3, block 1) over
its default range (1-15 % of the schedule) and a wide one (1-90 %); PSNR of each cached run
against the same workflow uncached, same seed. The figures in the SLG warning
(adacache/runtime.py SKIP_PASS_ON_CACHED_STEPS) come from this.

    .venv/bin/python benchmarks/bench_slg.py   # writes benchmarks/results/bench_slg.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import load_module, psnr  # noqa: E402

SAMPLES = [("fast motion", 0), ("fast motion", 1), ("static", 0), ("static", 1)]


def main() -> None:
    bq = load_module("bench_quality", ROOT / "benchmarks" / "bench_quality.py")
    torch.set_num_threads(1)
    b = bq.Bench("demo", 30)
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT

    lines = ["| SLG range | cached vs uncached, no SLG (dB) | cached vs uncached, with SLG (dB) "
             "| difference |", "|---|---:|---:|---:|"]
    for end in (0.15, 0.9):
        slg = SkipLayerGuidanceDiT.execute(b.model, 3.0, 0.01, end, "1", "").result[0]
        plain, with_slg = [], []
        for scene, seed in SAMPLES:
            ref, ref_slg = b.sample(b.model, scene, seed)[0], b.sample(slg, scene, seed)[0]
            fast = b.apply(b.model, b.ac.AdaCacheConfig(preset="fast"))
            fast_slg = b.apply(slg, b.ac.AdaCacheConfig(preset="fast"))
            plain.append(psnr(b.sample(fast, scene, seed)[0], ref))
            with_slg.append(psnr(b.sample(fast_slg, scene, seed)[0], ref_slg))
        a, c = float(np.mean(plain)), float(np.mean(with_slg))
        lines.append(f"| 1-{end * 100:g} % | {a:.2f} | {c:.2f} | {c - a:+.2f} |")
        print(lines[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "bench_slg.md"
    out.write_text("# SkipLayerGuidance with AdaCache (demo model, preset fast, 30 steps)\n\n"
                   f"`benchmarks/bench_slg.py`; samples {SAMPLES}.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
