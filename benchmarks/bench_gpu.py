"""AdaCache on a GPU: wall-clock speedup and the cost of ``offload_cache``, Wan-sized models.

How to run (a CUDA machine with torch, torchvision, transformers, safetensors, einops, scipy,
and ComfyUI 0.3.75 at ``.host/ComfyUI``; ``torchsde``/``trampoline`` are the only other
packages the imports below need)::

    python benchmarks/bench_gpu.py --configs wan1.3b
    python benchmarks/bench_gpu.py --configs wan14b-width --merge benchmarks/results/bench_gpu.json
    python benchmarks/bench_gpu.py --configs tiny --out /tmp/smoke     # logic check, CPU is fine
    python benchmarks/bench_gpu.py --render-only --merge a.json b.json  # merge results, no run

What it measures, per configuration, in ONE process:

* a Wan 2.1 ``WanModel`` of the given width/depth with seeded random weights (matrices
  N(0, 0.02), vectors N(0, 0.01), stored as bf16) generated on the GPU, loaded as a ModelPatcher
  through ``comfy.sd.load_diffusion_model_state_dict`` (what ``load_diffusion_model`` does after
  reading the safetensors file; model detection and dtype choice are ComfyUI's own);
* ``comfy.sample.sample``: euler/simple, cfg 5 (cond + uncond batched), a random
  [1, 512, 4096] positive context and a zero negative one, same seed and noise for every method:
  uncached, AdaCache ``fast``, ``slow``, and ``fast`` with ``offload_cache=True`` (cached
  residuals kept on ComfyUI's offload device, CPU memory, and copied back each cached step);
* one warm-up run per method, then ``repeats`` rounds with the methods interleaved (order rotated
  each round); medians reported. Wall time: ``torch.cuda.synchronize()`` before each clock read;
* per model call: an APPLY_MODEL timer (outermost, so the caching bookkeeping is included,
  synchronised) classifies each call as computed or cached from the AdaCache run's trace;
* computed steps from the run summary of the output (``adacache_handle.summary_for(out)``);
* GPU memory: ``torch.cuda.max_memory_allocated`` (peak reset before each run) and that peak
  minus what was allocated at the start of the run (the resident weights): the working memory;
* where the cached residuals actually live (the devices the pack stores them on, observed);
* quality: PSNR of the final latent vs the uncached latent (range of the uncached latent).

Writes ``<out>/bench_gpu.md`` and ``bench_gpu.json`` after every configuration, so a run cut
short keeps what it finished. Random weights give small step-to-step changes, so the presets
skip about as much as they can: the speedups are for this setup, not quality claims.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # comfy_host only; never the repo root (nodes/ shadows)
sys.path.insert(0, str(ROOT / "benchmarks"))
import comfy_host  # noqa: E402
from benchkit import fmt, jsonable, median, psnr  # noqa: E402
from benchkit import machine_info as benchkit_machine_info  # noqa: E402

TIMER_KEY = "adacache_bench_gpu_timer"

# latent [1, 16, frames, height, width]; Wan's VAE: frames = (video frames - 1) / 4 + 1, /8 space
CONFIGS = {
    "tiny": dict(dim=128, ffn=256, layers=4, frames=3, height=8, width=8, text_tokens=16,
                 repeats=2, video="tiny smoke test"),
    "wan1.3b": dict(dim=1536, ffn=8960, layers=30, frames=9, height=60, width=104,
                    text_tokens=512, repeats=3, video="832x480, 33 frames"),
    "wan14b-width": dict(dim=5120, ffn=13824, layers=40, frames=5, height=60, width=104,
                         text_tokens=512, repeats=2, video="832x480, 17 frames"),
}
METHODS = {  # "custom" takes its codebook from --codebook
    "uncached": None,
    "adacache-fast": dict(preset="fast"),
    "adacache-slow": dict(preset="slow"),
    "adacache-fast-offload": dict(preset="fast", offload_cache=True),
    "adacache-custom": dict(preset="custom"),
    "adacache-custom-offload": dict(preset="custom", offload_cache=True),
    # the calibrated plan: one calibration run of this model (preset "calibrate"), then
    # calibrate(speed=--plan-speed) (docs/calibration.md)
    "adacache-plan": dict(preset="plan"),
    "adacache-plan-offload": dict(preset="plan", offload_cache=True),
}
DEFAULT_METHODS = "uncached,adacache-fast,adacache-slow,adacache-fast-offload"


# -- host --------------------------------------------------------------------------------------
def boot() -> types.SimpleNamespace:
    """The real ComfyUI host in-process (tests/comfy_host.py), on CUDA when there is one."""
    comfy_host.boot_host(cpu=not torch.cuda.is_available())
    comfy_host.import_pack(register_nodes=False)
    import comfy.ldm.modules.attention as attention
    import comfy.ldm.wan.model as wan_model
    import comfy.model_management as mm
    import comfy.ops
    import comfy.sample
    import comfy.sd
    from comfyui_adacache.adacache import AdaCacheConfig, Codebook, cache_store
    from comfyui_adacache.nodes.patch import apply_adacache

    return types.SimpleNamespace(
        mm=mm, ops=comfy.ops, sample=comfy.sample, sd=comfy.sd, wan=wan_model,
        attention=attention, version=comfy_host.VERSION, cache_store=cache_store,
        AdaCacheConfig=AdaCacheConfig, Codebook=Codebook, apply_adacache=apply_adacache,
    )


class StoreProbe:
    """Records the devices AdaCache stores its cache tensors on (wraps ``CacheStore.store``,
    observing only)."""

    def __init__(self, cache_store):
        self.devices: set[str] = set()
        original = cache_store.CacheStore.store

        def store(caches, tensor, *args, **kwargs):
            out = original(caches, tensor, *args, **kwargs)
            self.devices.add(str(out.device))
            return out

        cache_store.CacheStore.store = store

    def take(self) -> list[str]:
        out, self.devices = sorted(self.devices), set()
        return out


# -- model -------------------------------------------------------------------------------------
def build_model(h, cfg: dict, seed: int, device: torch.device):
    with torch.device("meta"):
        module = h.wan.WanModel(
            dim=cfg["dim"], ffn_dim=cfg["ffn"], num_heads=cfg["dim"] // 128,
            num_layers=cfg["layers"], operations=h.ops.disable_weight_init, device="meta",
        )
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    del module
    gen = torch.Generator(device=device).manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        scale = 0.02 if len(shape) > 1 else 0.01
        t = torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * scale
        state[key] = t.to(torch.bfloat16)
    params = sum(math.prod(s) for s in shapes.values())
    model = h.sd.load_diffusion_model_state_dict(state)
    if model is None:
        raise RuntimeError("ComfyUI did not detect the random Wan state dict")
    del state
    if device.type == "cuda":
        torch.cuda.empty_cache()
    g = torch.Generator().manual_seed(seed + 1)
    context = torch.randn(1, cfg["text_tokens"], 4096, generator=g)
    return model, context, params


# -- timing ------------------------------------------------------------------------------------
def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class CallTimer:
    """APPLY_MODEL wrapper, registered before AdaCache's, so it is the outermost."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, executor, *args, **kwargs):
        sync()
        start = time.perf_counter()
        try:
            return executor(*args, **kwargs)
        finally:
            sync()
            self.calls.append({"sigma": float(args[1].max()),
                               "seconds": time.perf_counter() - start})


def make_variants(h, base, timer: CallTimer, methods: list[str], codebook, plan=None) -> dict:
    from comfy.patcher_extension import WrappersMP

    timed = base.clone()
    timed.add_wrapper_with_key(WrappersMP.APPLY_MODEL, TIMER_KEY, timer)
    variants = {}
    for name in methods:
        options = METHODS[name]
        if options is None:
            variants[name] = timed
            continue
        if options["preset"] == "custom":
            options = dict(options, codebook=codebook)
        if options["preset"] == "plan":
            options = dict(options, preset="custom", plan=plan)
        variants[name] = h.apply_adacache(timed, h.AdaCacheConfig(**options))
    return variants


def parse_codebook(h, text: str | None):
    """``"0.6857:6,0.7127:5,...,1.641:1"`` (threshold:rate pairs) -> Codebook, or None."""
    if not text:
        return None
    pairs = [item.split(":") for item in text.split(",")]
    return h.Codebook(tuple(float(t) for t, _ in pairs), tuple(int(r) for _, r in pairs))


def sample(h, model, noise, latent, positive, negative, steps, cfg, seed):
    return h.sample.sample(
        model, noise, steps, cfg, "euler", "simple", positive, negative, latent,
        seed=seed, disable_pbar=True,
    )


def computed_flags(calls: list[dict], summary: dict | None) -> list[bool]:
    if summary is None:
        return [True] * len(calls)
    at = {r["sigma"]: bool(r["computed"]) for r in summary["trace"] if r["computed"] is not None}
    return [at[min(at, key=lambda s: abs(s - c["sigma"]))] for c in calls]


# -- one configuration -------------------------------------------------------------------------
def run_config(h, name: str, args, probe: StoreProbe) -> dict:
    cfg = dict(CONFIGS[name])
    if args.repeats is not None:
        cfg["repeats"] = args.repeats
    device = h.mm.get_torch_device()
    cuda = device.type == "cuda"
    started = time.perf_counter()
    base, context, params = build_model(h, cfg, args.seed, device)
    build_s = time.perf_counter() - started
    dm = base.model.diffusion_model
    dtype = base.model.get_dtype()
    latent = torch.zeros(1, 16, cfg["frames"], cfg["height"], cfg["width"])
    noise = h.sample.prepare_noise(latent, args.seed)
    positive = [[context, {}]]
    negative = [[torch.zeros_like(context), {}]]
    p = dm.patch_size
    tokens = (cfg["frames"] // p[0]) * (cfg["height"] // p[1]) * (cfg["width"] // p[2])
    hidden_bytes = tokens * dm.dim * torch.empty((), dtype=dtype).element_size()
    timer = CallTimer()
    codebook = parse_codebook(h, args.codebook)
    plan = None
    if any(m.startswith("adacache-plan") for m in args.methods):
        from comfyui_adacache.adacache import CalibrationSample, calibrate

        calibrating = h.apply_adacache(base, h.AdaCacheConfig(preset="calibrate"))
        out = sample(h, calibrating, noise, latent, positive, negative, args.steps, args.cfg,
                     args.seed + 1)  # another seed than the measured runs
        summary = calibrating.model_options["transformer_options"]["adacache_handle"].summary_for(
            out)
        result = calibrate([CalibrationSample.from_dict(summary["calibration_sample"])],
                           args.plan_speed)
        plan = result.plan
        print(f"[{name}] {result.describe()}", flush=True)
    variants = make_variants(h, base, timer, args.methods, codebook, plan)
    names = list(variants)
    print(f"[{name}] WanModel dim {dm.dim}, ffn {cfg['ffn']}, {len(dm.blocks)} blocks, "
          f"{params / 1e9:.2f} B params, {dtype}; latent {list(latent.shape)} -> {tokens} tokens; "
          f"built and loaded in {build_s:.1f}s", flush=True)

    def one_run(variant_name):
        model = variants[variant_name]
        timer.calls = []
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            start_alloc = torch.cuda.memory_allocated()
        sync()
        t = time.perf_counter()
        out = sample(h, model, noise, latent, positive, negative, args.steps, args.cfg, args.seed)
        sync()
        wall = time.perf_counter() - t
        summary = None
        if variant_name != "uncached":
            summary = model.model_options["transformer_options"]["adacache_handle"].summary_for(
                out)
        flags = computed_flags(timer.calls, summary)
        rec = {
            "wall_s": wall,
            "calls": [dict(c, computed=f) for c, f in zip(timer.calls, flags, strict=True)],
            "summary": summary,
            "store_devices": probe.take(),
            "finite": bool(torch.isfinite(out).all()),
        }
        if cuda:
            rec["peak_bytes"] = torch.cuda.max_memory_allocated()
            rec["start_bytes"] = start_alloc
            rec["end_bytes"] = torch.cuda.memory_allocated()
        return out, rec

    warmup = {}
    for n in names:
        _, rec = one_run(n)
        warmup[n] = rec["wall_s"]
        print(f"[{name}] warm-up {n:<22} {rec['wall_s']:8.2f}s", flush=True)
    results = {n: {"runs": [], "outputs": []} for n in names}
    for rep in range(cfg["repeats"]):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for n in order:
            out, rec = one_run(n)
            results[n]["runs"].append(rec)
            results[n]["outputs"].append(out)
            done = sum(c["computed"] for c in rec["calls"])
            print(f"[{name}] round {rep + 1}/{cfg['repeats']} {n:<22} {rec['wall_s']:8.2f}s "
                  f"({done}/{len(rec['calls'])} calls computed)", flush=True)

    notes = []
    ref = results["uncached"]["outputs"][0]
    unc_calls = [c["seconds"] for r in results["uncached"]["runs"] for c in r["calls"]]
    t_call = median(unc_calls)
    t_unc = median([r["wall_s"] for r in results["uncached"]["runs"]])
    rows = []
    for n in names:
        runs, outs = results[n]["runs"], results[n]["outputs"]
        if any(not torch.equal(outs[0], o) for o in outs[1:]):
            notes.append(f"{n}: outputs differ between repeats")
        if not all(r["finite"] for r in runs):
            notes.append(f"{n}: non-finite values in the output latent")
        calls = [c for r in runs for c in r["calls"]]
        wall = median([r["wall_s"] for r in runs])
        first = runs[0]
        s = first["summary"]
        computed_t = median([c["seconds"] for c in calls if c["computed"]])
        cached_t = median([c["seconds"] for c in calls if not c["computed"]])
        row = {
            "name": n,
            "wall_s": wall,
            "wall_all_s": [r["wall_s"] for r in runs],
            "warmup_s": warmup[n],
            "speedup": t_unc / wall,
            "calls_per_run": len(first["calls"]),
            "computed_calls": sum(c["computed"] for c in first["calls"]),
            "computed_steps": s["computed_steps"] if s else args.steps,
            "steps": s["steps_reached"] if s else args.steps,
            "pattern": s["pattern"] if s else None,
            "computed_call_s": computed_t,
            "cached_call_s": cached_t,
            "cached_call_fraction": cached_t / t_call if cached_t is not None else None,
            "computed_call_fraction": computed_t / t_call if computed_t is not None else None,
            "psnr_db": None if n == "uncached" else psnr(ref, outs[0]),
            "cache_peak_bytes": s["peak_cache_bytes"] if s else None,
            "cache_streams": s["streams"] if s else None,
            "cache_devices": sorted({d for r in runs for d in r["store_devices"]}),
            "distance_range": s["distance_range"] if s else None,
            "warnings": s["warnings"] if s else [],
        }
        if cuda:
            row["peak_bytes"] = max(r["peak_bytes"] for r in runs)
            row["working_bytes"] = max(r["peak_bytes"] - r["start_bytes"] for r in runs)
            row["start_bytes"] = median([r["start_bytes"] for r in runs])
        if s and s["stack_runs"] != row["computed_calls"]:
            # cond + uncond batched: one call per step, so stack runs == computed calls
            notes.append(f"{n}: {row['computed_calls']} calls classified computed, "
                         f"summary stack_runs {s['stack_runs']}")
        rows.append(row)
    by = {r["name"]: r for r in rows}
    comparisons = []
    for n in names:
        base_name = n.removesuffix("-offload")
        if n == base_name or base_name not in by:
            continue
        offload, gpu = by[n], by[base_name]
        comparison = {
            "offload": n,
            "gpu": base_name,
            "wall_ratio_offload_vs_gpu": offload["wall_s"] / gpu["wall_s"],
            "extra_s_per_run": offload["wall_s"] - gpu["wall_s"],
            "cached_call_extra_s": (offload["cached_call_s"] - gpu["cached_call_s"])
            if offload["cached_call_s"] is not None and gpu["cached_call_s"] is not None
            else None,
            "computed_call_extra_s": offload["computed_call_s"] - gpu["computed_call_s"],
            "same_output": bool(torch.equal(results[base_name]["outputs"][0],
                                            results[n]["outputs"][0])),
        }
        if cuda:
            comparison["peak_saved_bytes"] = gpu["peak_bytes"] - offload["peak_bytes"]
            comparison["working_saved_bytes"] = gpu["working_bytes"] - offload["working_bytes"]
        comparisons.append(comparison)
    info = {
        "name": name + (f" ({args.label})" if args.label else ""),
        "config": name,
        "video": cfg["video"],
        "codebook": args.codebook,
        "dim": dm.dim, "ffn": cfg["ffn"], "heads": dm.num_heads, "layers": len(dm.blocks),
        "params": params, "dtype": str(dtype).replace("torch.", ""),
        "latent": list(latent.shape), "tokens": tokens, "text_tokens": cfg["text_tokens"],
        "hidden_bytes": hidden_bytes, "steps": args.steps, "cfg": args.cfg, "seed": args.seed,
        "repeats": cfg["repeats"], "uncached_call_s": t_call, "build_s": build_s,
        "offload_device": str(h.mm.unet_offload_device()),
        "vram_state": str(h.mm.vram_state),
        "total_s": time.perf_counter() - started,
    }
    return {"setup": info, "rows": rows, "offload": comparisons, "notes": notes}


# -- report ------------------------------------------------------------------------------------
def offload_line(off: dict) -> list[str]:
    ratio = off["wall_ratio_offload_vs_gpu"]
    return [
        "",
        f"{off['offload']} vs {off['gpu']} (cache on the GPU): wall {ratio:.3f}x "
        f"({off['extra_s_per_run']:+.2f} s per run); per cached call "
        f"{fmt(off['cached_call_extra_s'], '{:+.4f}')} s, per computed call "
        f"{fmt(off['computed_call_extra_s'], '{:+.4f}')} s; peak GPU memory saved "
        f"{fmt(mib(off.get('peak_saved_bytes')), '{:.0f}')} MiB, working memory saved "
        f"{fmt(mib(off.get('working_saved_bytes')), '{:.0f}')} MiB; output identical to the "
        f"GPU-cache run: {off['same_output']}.",
    ]


def gib(v):
    return None if v is None else v / 2**30


def mib(v):
    return None if v is None else v / 2**20


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# AdaCache on a GPU: speedup and offload_cache cost (`benchmarks/bench_gpu.py`)",
        "",
        f"Device: {m.get('gpu', m.get('device'))}; torch {m['torch']} (CUDA {m.get('cuda')}), "
        f"ComfyUI {m['comfyui']}, attention `{m.get('attention')}`, Python {m['python']}.",
        "",
        f"Command(s): {'; '.join(f'`{c}`' for c in report['commands'])}",
        "",
    ]
    for conf in report["configs"]:
        s, rows, off = conf["setup"], conf["rows"], conf["offload"]
        lines += [
            f"## {s['name']}: WanModel dim {s['dim']}, ffn {s['ffn']}, {s['heads']} heads, "
            f"{s['layers']} layers ({s['params'] / 1e9:.2f} B params, {s['dtype']})",
            "",
            f"Latent {s['latent']} ({s['video']}) = {s['tokens']} tokens; text {s['text_tokens']} "
            f"tokens; {s['steps']} steps euler/simple, cfg {s['cfg']} (cond + uncond batched), "
            f"seed {s['seed']}; random weights; one warm-up per method, then medians of "
            f"{s['repeats']} interleaved rounds. Offload device: `{s['offload_device']}`; "
            f"ComfyUI VRAM state `{s['vram_state']}`.",
            "",
            "| method | wall s | speedup | computed steps | full call s | cached call s "
            "| peak GiB | working GiB | cache MiB (device) | PSNR dB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            cache = "-"
            if r["cache_peak_bytes"] is not None:
                cache = f"{mib(r['cache_peak_bytes']):.1f} ({', '.join(r['cache_devices'])})"
            lines.append(
                f"| {r['name']} | {fmt(r['wall_s'])} | {fmt(r['speedup'], '{:.2f}x')} "
                f"| {r['computed_steps']}/{r['steps']} | {fmt(r['computed_call_s'], '{:.3f}')} "
                f"| {fmt(r['cached_call_s'], '{:.3f}')} | {fmt(gib(r.get('peak_bytes')))} "
                f"| {fmt(gib(r.get('working_bytes')))} | {cache} | {fmt(r['psnr_db'], '{:.1f}')} |"
            )
        if s.get("codebook"):
            lines += ["", f"adacache-custom codebook (threshold:rate): `{s['codebook']}`."]
        for o in off:
            lines += offload_line(o)
        lines += [
            "",
            "Wall s of each round: " + "; ".join(
                f"{r['name']} {', '.join(f'{w:.2f}' for w in r['wall_all_s'])}" for r in rows),
            "",
            "Schedules (C computed, . cached): " + "; ".join(
                f"{r['name']} `{r['pattern']}`" for r in rows if r["pattern"]),
        ]
        if conf["notes"]:
            lines += ["", "Notes: " + "; ".join(conf["notes"])]
        lines.append("")
    lines += [
        "How to read it:",
        "",
        "- wall s: median wall time of one `comfy.sample.sample` call (CUDA synchronised before "
        "each clock read); speedup = uncached wall / this wall.",
        "- computed steps: `computed_steps` of the AdaCache run summary (a computed step runs the "
        "block stack once for cond and uncond batched).",
        "- full / cached call s: median time of one model call (APPLY_MODEL wrapper outside "
        "AdaCache's, synchronised), computed and cached calls. A cached call still runs "
        "patch/text/time embeddings, head and unpatchify, not the block stack.",
        "- peak GiB: `torch.cuda.max_memory_allocated()` over a run (reset before it; includes "
        "the resident weights); working GiB: that peak minus what was allocated when the run "
        "started (activations, AdaCache's cache, sampler tensors).",
        "- cache MiB: AdaCache's `peak_cache_bytes` over all streams (stack residual + "
        "metric-block residual per stream); device: where the pack stored them (observed).",
        "- PSNR: final latent vs the uncached final latent, same seed and noise, data range of "
        "the uncached latent. Random weights: read speed ratios, not quality.",
    ]
    return "\n".join(lines) + "\n"


def machine_info(h) -> dict:
    return benchkit_machine_info(
        comfyui=h.version, device=str(h.mm.get_torch_device()),
        attention=getattr(h.attention.optimized_attention, "__name__", "?"),
    )


def unjson(value):
    if isinstance(value, dict):
        return {k: unjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unjson(v) for v in value]
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.md").write_text(render(report))
    (out / "bench_gpu.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="wan1.3b",
                        help=f"comma-separated, run in order; of {', '.join(CONFIGS)}")
    parser.add_argument("--tiny", action="store_true", help="shorthand for --configs tiny")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=None, help="override the config's")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--codebook", default=None,
                        help="for adacache-custom: threshold:rate pairs, e.g. 0.69:6,...,1.6:1")
    parser.add_argument("--plan-speed", type=float, default=3.0,
                        help="speed target of the calibrated plan (adacache-plan methods)")
    parser.add_argument("--label", default="", help="appended to the configuration's name")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="earlier bench_gpu.json files whose configurations to keep")
    parser.add_argument("--render-only", action="store_true", help="merge and render, no run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if "uncached" not in args.methods:
        parser.error("the methods must include uncached (the reference)")
    if any(METHODS[m] and METHODS[m]["preset"] == "custom" for m in args.methods) and not (
        args.codebook
    ):
        parser.error("adacache-custom needs --codebook")
    names = ["tiny"] if args.tiny else [n for n in args.configs.split(",") if n]
    for n in names:
        if n not in CONFIGS:
            parser.error(f"unknown config {n!r}; choose from {', '.join(CONFIGS)}")
    report = {"machine": {}, "commands": [], "configs": []}
    for path in args.merge:
        old = unjson(json.loads(path.read_text()))
        for conf in old["configs"]:  # first version: one comparison, fast vs fast-offload
            if isinstance(conf["offload"], dict):
                conf["offload"] = [dict(conf["offload"], offload="adacache-fast-offload",
                                        gpu="adacache-fast")]
        report["machine"] = old["machine"]
        report["commands"] += [c for c in old["commands"] if c not in report["commands"]]
        report["configs"] = [c for c in report["configs"]
                             if c["setup"]["name"] not in {o["setup"]["name"]
                                                           for o in old["configs"]}]
        report["configs"] += old["configs"]
    if args.render_only:
        write(report, args.out)
        print(render(report))
        return
    logging.getLogger("AdaCache").setLevel(logging.WARNING)
    h = boot()
    probe = StoreProbe(h.cache_store)
    machine = machine_info(h)
    if report["machine"] and report["machine"].get("gpu") != machine.get("gpu"):
        print(f"warning: merging results from {report['machine'].get('gpu')} with "
              f"{machine.get('gpu')}", file=sys.stderr)
    report["machine"] = machine
    report["commands"].append(" ".join(
        shlex.quote(a) for a in ["python", "benchmarks/bench_gpu.py", *sys.argv[1:]]))
    print(f"device: {machine.get('gpu', machine['device'])}; attention {machine['attention']}",
          flush=True)
    for n in names:
        conf = run_config(h, n, args, probe)
        h.mm.unload_all_models()  # the next configuration starts with an empty GPU
        h.mm.soft_empty_cache()
        label = conf["setup"]["name"]
        report["configs"] = [c for c in report["configs"] if c["setup"]["name"] != label]
        report["configs"].append(conf)
        write(report, args.out)
        print(render(report), flush=True)
    print(f"wrote {args.out / 'bench_gpu.md'} and bench_gpu.json")


if __name__ == "__main__":
    main()
