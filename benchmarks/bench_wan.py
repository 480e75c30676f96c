"""AdaCache benchmark on a small random-weight Wan model, CPU, in one run (``make bench``).

What it does:

* builds a small Wan-architecture model with seeded random weights, saves it as safetensors and
  loads it back through ``comfy.sd.load_diffusion_model`` (the "Load Diffusion Model" path);
* samples 30 euler steps, cfg 5 (cond and uncond batched into one model call per step), with
  the same seed and noise for: uncached, AdaCache fast, AdaCache slow and ComfyUI's native
  EasyCache (peer reference);
* one warm-up run per method first, then ``--repeats`` rounds with the configurations
  interleaved (and the order rotated each round) so that machine drift hits them all alike;
  medians are reported;
* per-call timing: a timer wrapper (APPLY_MODEL, the outermost wrapper, so it includes the
  caching methods' own overhead) records every model call; each call is classified as computed
  or cached (AdaCache: from the run's trace, matched by sigma; EasyCache: by whether the
  diffusion model under EasyCache's wrapper ran). The cost of a cached step as a fraction of a
  full step is median(cached call) / median(uncached call); a cross-check solves it from the
  total wall times instead;
* torch runs single-threaded by default (``--threads``): this machine has 2 cores shared with
  other jobs, and a 2-thread run slows down 10x and more whenever another process takes one
  core (each parallel region waits for the descheduled thread), which swamps the ratios;
* quality vs the uncached output latent: PSNR (data range of the uncached latent) and SSIM
  (scikit-image, per frame, 16 latent channels);
* memory: AdaCache's ``peak_cache_bytes`` per stream (EasyCache: the tensors its holder keeps
  between steps), also as a multiple of one hidden state [1, tokens, dim] in the model's dtype;
* a reference row, not a method: every block replaced by the identity ("stack-skipped"), the
  time floor of a step without the block stack and a yardstick for how much the stack matters.

Writes benchmarks/results/bench_wan.md and bench_wan.json. Random weights make the per-step
distances small, so the presets skip a lot; the numbers are what this run measured, no more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # comfy_host only; never the repo root (nodes/ shadows)

import comfy_host  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from benchkit import fmt, jsonable, machine_info, median, psnr, ssim, stopwatch  # noqa: E402

comfy_host.boot_host()
comfy_host.import_pack()

import comfy.ldm.wan.model as wan_model  # noqa: E402
import comfy.model_management  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.patcher_extension  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.sd  # noqa: E402
from comfy.patcher_extension import WrappersMP  # noqa: E402
from comfyui_adacache.adacache import AdaCacheConfig  # noqa: E402
from comfyui_adacache.nodes.patch import apply_adacache  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

TIMER_KEY = "adacache_bench_timer"


# -- model -------------------------------------------------------------------------------------
def build_model(args, workdir: Path):
    torch.manual_seed(args.seed)
    module = wan_model.WanModel(
        dim=args.dim,
        ffn_dim=args.ffn,
        num_heads=args.dim // 128,
        num_layers=args.layers,
        operations=comfy.ops.disable_weight_init,
    )
    g = torch.Generator().manual_seed(args.seed)
    state = {
        k: (torch.randn(v.shape, generator=g) * (0.02 if v.ndim > 1 else 0.01)).contiguous()
        for k, v in module.state_dict().items()
    }
    del module
    path = workdir / "bench_wan.safetensors"
    save_file(state, str(path))
    model = comfy.sd.load_diffusion_model(str(path))
    context = torch.randn(1, args.text_tokens, 4096, generator=g)
    return model, context


# -- per-call timer ----------------------------------------------------------------------------
class CallRecorder:
    """APPLY_MODEL timer (outermost) plus a DIFFUSION_MODEL probe (innermost)."""

    def __init__(self):
        self.calls: list[dict] = []
        self._current: dict | None = None

    def reset(self):
        self.calls = []

    def apply_model(self, executor, *args, **kwargs):
        call = {"sigma": float(args[1].max()), "inner": False}
        self._current = call
        try:
            with stopwatch() as times:
                return executor(*args, **kwargs)
        finally:  # after the stopwatch stopped
            call["seconds"], call["cpu_seconds"] = times.wall, times.cpu
            transformer_options = args[5] if len(args) > 5 else kwargs.get("transformer_options")
            holder = (transformer_options or {}).get("easycache")
            if holder is not None:  # timed already; measuring EasyCache's cache adds nothing
                call["easycache_bytes"] = easycache_bytes(holder)
                call["easycache_streams"] = len(holder.uuid_cache_diffs)
            self._current = None
            self.calls.append(call)

    def diffusion_model(self, executor, *args, **kwargs):
        if self._current is not None:
            self._current["inner"] = True
        return executor(*args, **kwargs)


def easycache_bytes(holder) -> int:
    """What EasyCache holds between steps: per-stream output diffs and the subsampled probes."""
    tensors = [*holder.uuid_cache_diffs.values(), holder.x_prev_subsampled,
               holder.output_prev_subsampled]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def with_timer(model, recorder: CallRecorder):
    model = model.clone()
    model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, TIMER_KEY, recorder.apply_model)
    return model


def add_inner_probe(model, recorder: CallRecorder):
    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, TIMER_KEY, recorder.diffusion_model)
    return model


# -- variants ----------------------------------------------------------------------------------
def skip_block(args, extra):
    return {"img": args["img"]}


def make_variants(base, recorder: CallRecorder, with_easycache: bool):
    timed = with_timer(base, recorder)  # the timer key comes first: it wraps everything else
    variants = {"uncached": {"model": timed, "kind": "none"}}
    for preset in ("fast", "slow"):
        patched = apply_adacache(timed, AdaCacheConfig(preset=preset))
        variants[f"adacache-{preset}"] = {"model": patched, "kind": "adacache"}
    if with_easycache:
        try:
            from comfy_extras.nodes_easycache import EasyCacheNode

            out = EasyCacheNode.execute(
                timed, reuse_threshold=0.2, start_percent=0.15, end_percent=0.95, verbose=False
            )
            model = add_inner_probe(out.result[0], recorder)
            variants["easycache-0.2"] = {"model": model, "kind": "easycache"}
        except Exception as e:  # a peer reference only; report and go on without it
            print(f"EasyCache unavailable: {type(e).__name__}: {e}", file=sys.stderr)
    # Reference, not a method: every block replaced by the identity. Its time is the floor of a
    # step without the block stack; its PSNR shows how much the stack matters in this model.
    skipped = timed.clone()
    for i in range(len(base.get_model_object("diffusion_model").blocks)):
        skipped.set_model_patch_replace(skip_block, "dit", "double_block", i)
    variants["stack-skipped (ref)"] = {"model": skipped, "kind": "skipped"}
    return variants


def sample(model, noise, latent, positive, negative, args):
    return comfy.sample.sample(
        model, noise, args.steps, args.cfg, "euler", "simple", positive, negative, latent,
        seed=args.seed, disable_pbar=True,
    )


def classify_calls(variant: dict, calls: list[dict], summary: dict | None) -> list[bool]:
    """True for a call that ran the full model (block stack), False for a cached one."""
    if variant["kind"] == "none":
        return [True] * len(calls)
    if variant["kind"] == "skipped":
        return [False] * len(calls)
    if variant["kind"] == "easycache":
        return [c["inner"] for c in calls]
    computed_at = {}
    for record in summary["trace"]:
        if record["computed"] is not None:
            computed_at[record["sigma"]] = bool(record["computed"])
    flags = []
    for c in calls:
        sigma = min(computed_at, key=lambda s: abs(s - c["sigma"]))
        flags.append(computed_at[sigma])
    return flags


# -- quality -----------------------------------------------------------------------------------
# -- report ------------------------------------------------------------------------------------
def render_markdown(report: dict) -> str:
    cfg, info, rows = report["setup"], report["machine"], report["rows"]
    lines = [
        "# AdaCache benchmark: small random-weight Wan model, CPU",
        "",
        f"Command: `{report['command']}` (`make bench`)",
        "",
        f"Machine: {info['cpu_count']} CPU(s), torch {info['torch']} "
        f"(torch threads: {info['torch_threads']}), ComfyUI {info['comfyui']}, "
        f"Python {info['python']}, {info['platform']}, device {info['device']}.",
        "",
        f"Model: WanModel dim {cfg['dim']}, ffn {cfg['ffn']}, heads {cfg['heads']}, "
        f"{cfg['layers']} layers, seeded random weights, {cfg['dtype']}, loaded through "
        f"`comfy.sd.load_diffusion_model`. Latent {cfg['latent']} -> {cfg['tokens']} tokens; "
        f"text context {cfg['text_tokens']} tokens. Sampling: {cfg['steps']} steps euler/simple, "
        f"cfg {cfg['cfg']} (cond+uncond batched: {cfg['calls_per_run']} model calls per run), "
        f"seed {cfg['seed']}. One warm-up run per method, then {cfg['repeats']} interleaved "
        "rounds; times are medians. Uncached model call (one step, cond+uncond): "
        f"{cfg['uncached_call_s'] * 1000:.1f} ms; sampler time outside the model calls: "
        f"{cfg['sampler_overhead_s']:.2f} s per run.",
        "",
        "| method | wall s | speedup | computed steps | cached-step cost | computed-step cost "
        "| cache/stream | x hidden | PSNR dB | SSIM |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mem = r["cache_bytes_per_stream"]
        lines.append(
            f"| {r['name']} | {fmt(r['wall_s'])} | {fmt(r['speedup'], '{:.2f}x')} "
            f"| {r['computed_steps']}/{r['steps']} "
            f"| {fmt(r['cached_step_fraction'], '{:.3f}')} "
            f"| {fmt(r['computed_step_fraction'], '{:.3f}')} "
            f"| {fmt(mem / 2**20 if mem is not None else None, '{:.2f} MiB')} "
            f"| {fmt(r['cache_x_hidden'], '{:.2f}')} "
            f"| {fmt(r['psnr_db'])} | {fmt(r['ssim'], '{:.4f}')} |"
        )
    lines += [
        "",
        "Process CPU time (all threads; less sensitive to other load on the machine than wall "
        "time, but it counts idle-spinning worker threads too):",
        "",
        "| method | CPU s | CPU speedup | cached-step cost (CPU) | wall s, each round |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {fmt(r['cpu_s'])} | {fmt(r['cpu_speedup'], '{:.2f}x')} "
            f"| {fmt(r['cached_step_cpu_fraction'], '{:.3f}')} "
            f"| {', '.join(f'{w:.2f}' for w in r['wall_all_s'])} |"
        )
    lines += ["", "Schedules (C computed, . cached):", ""]
    lines += [f"- {r['name']}: `{r['pattern']}`" for r in rows if r.get("pattern")]
    ada = [r for r in rows if r.get("distance_range")]
    if ada:
        title = "AdaCache per-step distances (metric-block residual, relative L1 per step):"
        lines += ["", title, ""]
        lines += [
            f"- {r['name']}: {r['distance_range'][0]:.4g}..{r['distance_range'][1]:.4g}; codebook "
            f"{r['codebook']}; calibrated to this run: {r['calibrated_codebook']}"
            for r in ada
        ]
    lines += [
        "",
        "How to read it:",
        "",
        "- wall s: median wall time of one `comfy.sample.sample` call; speedup = uncached / this.",
        "- computed steps: steps whose model call ran the transformer block stack (AdaCache: "
        "`computed_steps` of the run summary; EasyCache: calls where the diffusion model ran).",
        "- cached-step cost: median time of a cached model call / median time of an uncached "
        "model call, both timed by an APPLY_MODEL wrapper outside the caching wrappers (so the "
        "methods' own bookkeeping is included). computed-step cost: the same for the computed "
        "calls of a cached run (includes AdaCache's metric and residual bookkeeping). "
        f"Cross-check from wall times (T = T_other + n_computed*T_step*c + n_cached*T_step*f, "
        f"c taken from the per-call column): {report['cross_check']}.",
        "- A cached AdaCache step still runs everything outside the block stack (embeddings, "
        "head, unpatchify); an EasyCache skipped step skips the whole diffusion model (it "
        "caches in output space), so its cached-step cost is near zero by construction.",
        "- stack-skipped (ref) is not a method: every block is replaced by the identity. Its "
        "time is the floor for a step without the block stack, and its PSNR/SSIM show how much "
        "the block stack contributes to the output of this random-weight model at all.",
        "- cache/stream: AdaCache `peak_cache_bytes / streams` (stack residual + metric-block "
        "residual); EasyCache: the peak, over model calls, of its per-stream output diffs plus "
        "its subsampled input/output probes, per stream (a latent-sized tensor); x hidden: "
        f"that over one hidden state [1, {cfg['tokens']}, {cfg['dim']}] "
        f"({cfg['hidden_bytes']} bytes).",
        "- PSNR/SSIM: output latent vs the uncached output latent of the same seed and noise "
        "(PSNR uses the uncached latent's value range; SSIM: scikit-image, per frame over the "
        "16 latent channels, averaged).",
        "- Random weights give small step-to-step changes, so the presets skip much more than "
        "they would on a trained model; read the speedups as upper-end for this setup.",
    ]
    if report["notes"]:
        lines += ["", "Notes from this run:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--frames", type=int, default=5, help="latent frames")
    parser.add_argument("--size", type=int, default=24, help="latent height and width")
    parser.add_argument("--text-tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads (default 1: on a shared 2-core machine a 2-thread run stalls on "
        "every parallel region whenever another process holds a core; 0: torch's default)",
    )
    parser.add_argument("--no-easycache", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.getLogger("AdaCache").setLevel(logging.WARNING)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_wan_") as tmp:
        base, context = build_model(args, Path(tmp))
    dm = base.model.diffusion_model
    dtype = base.model.get_dtype()
    positive = [[context, {}]]
    negative = [[torch.zeros_like(context), {}]]
    latent = torch.zeros(1, 16, args.frames, args.size, args.size)
    noise = comfy.sample.prepare_noise(latent, args.seed)
    patch = dm.patch_size
    tokens = (args.frames // patch[0]) * (args.size // patch[1]) * (args.size // patch[2])
    hidden_bytes = tokens * dm.dim * torch.empty((), dtype=dtype).element_size()

    recorder = CallRecorder()
    variants = make_variants(base, recorder, not args.no_easycache)
    names = list(variants)
    print(f"model: dim {dm.dim}, heads {dm.num_heads}, {len(dm.blocks)} blocks, {dtype}; "
          f"latent {list(latent.shape)} -> {tokens} tokens; variants {names}", flush=True)

    for name in names:  # one warm-up run each (first-call costs: allocator, lazy imports)
        t = time.perf_counter()
        sample(variants[name]["model"], noise, latent, positive, negative, args)
        print(f"warm-up {name:<19} {time.perf_counter() - t:7.2f}s", flush=True)

    results = {n: {"wall": [], "cpu": [], "calls": [], "outputs": [], "summaries": []}
               for n in names}
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            variant = variants[name]
            recorder.reset()
            with stopwatch() as times:
                out = sample(variant["model"], noise, latent, positive, negative, args)
            wall, cpu = times.wall, times.cpu
            res = results[name]
            res["wall"].append(wall)
            res["cpu"].append(cpu)
            res["outputs"].append(out)
            summary = None
            if variant["kind"] == "adacache":
                handle = variant["model"].model_options["transformer_options"]["adacache_handle"]
                summary = handle.summary_for(out)
                res["summaries"].append(summary)
            flags = classify_calls(variant, recorder.calls, summary)
            pairs = zip(recorder.calls, flags, strict=True)
            res["calls"].append([dict(c, full=f) for c, f in pairs])
            print(f"round {rep + 1}/{args.repeats} {name:<19} {wall:7.2f}s "
                  f"({sum(flags)}/{len(flags)} calls full)", flush=True)

    notes = []
    load_end = os.getloadavg()
    # the load at the end includes this benchmark's own threads
    others = max(load_start[0], load_end[0] - torch.get_num_threads())
    if others > 0.5:
        notes.append(
            f"the machine was not idle: 1-minute load average {load_start[0]:.1f} at the start, "
            f"{load_end[0]:.1f} at the end (this run's own {torch.get_num_threads()} thread(s) "
            f"included), on {os.cpu_count()} CPU(s); other processes shared the cores, so "
            "absolute times (and, less so, ratios) may be noisy"
        )
    ref_out = results["uncached"]["outputs"][0]
    full_calls = [c["seconds"] for calls in results["uncached"]["calls"] for c in calls]
    t_step = median(full_calls)
    t_unc = median(results["uncached"]["wall"])
    cpu_unc = median(results["uncached"]["cpu"])
    cpu_step = median([c["cpu_seconds"] for run in results["uncached"]["calls"] for c in run])
    calls_per_run = len(results["uncached"]["calls"][0])
    t_other = t_unc - calls_per_run * t_step
    rows, cross = [], []
    for name in names:
        res = results[name]
        variant = variants[name]
        outs = res["outputs"]
        if any(not torch.equal(outs[0], o) for o in outs[1:]):
            notes.append(f"{name}: outputs differ between repeats (not bit-reproducible)")
        calls = [c for run in res["calls"] for c in run]
        n_full_runs = [sum(c["full"] for c in run) for run in res["calls"]]
        if len(set(n_full_runs)) > 1:
            notes.append(f"{name}: computed calls differ between repeats: {n_full_runs}")
        n_full = n_full_runs[0]
        n_calls = len(res["calls"][0])
        cached_t = median([c["seconds"] for c in calls if not c["full"]])
        computed_t = median([c["seconds"] for c in calls if c["full"]])
        cached_cpu = median([c["cpu_seconds"] for c in calls if not c["full"]])
        wall = median(res["wall"])
        row = {
            "name": name,
            "wall_s": wall,
            "wall_all_s": res["wall"],
            "speedup": t_unc / wall,
            "cpu_s": median(res["cpu"]),
            "cpu_all_s": res["cpu"],
            "cpu_speedup": cpu_unc / median(res["cpu"]),
            "cached_step_cpu_fraction": cached_cpu / cpu_step if cached_cpu is not None else None,
            "steps": n_calls,
            "computed_steps": n_full,
            "cached_step_fraction": cached_t / t_step if cached_t is not None else None,
            "computed_step_fraction": computed_t / t_step if computed_t is not None else None,
            "cached_call_s": cached_t,
            "computed_call_s": computed_t,
            "psnr_db": None if name == "uncached" else psnr(ref_out, outs[0]),
            "ssim": None if name == "uncached" else ssim(
                ref_out[0].transpose(0, 1), outs[0][0].transpose(0, 1), channel_axis=1),
            "cache_bytes_per_stream": None,
            "cache_x_hidden": None,
            "pattern": None,
        }
        if variant["kind"] == "adacache":
            s = res["summaries"][0]
            row.update(
                computed_steps=s["computed_steps"],
                steps=s["steps_reached"],
                stack_runs=s["stack_runs"],
                streams=s["streams"],
                peak_cache_bytes=s["peak_cache_bytes"],
                pattern=s["pattern"],
                distance_range=s["distance_range"],
                calibrated_codebook=s["calibrated_codebook"],
                codebook=s["codebook"],
                warnings=s["warnings"],
            )
            # rates the codebook chose from a measured distance (step 0 has none: rate 1)
            rates = sorted({r["rate"] for r in s["trace"] if r.get("distance") is not None})
            if len(rates) == 1:
                notes.append(f"{name}: every measured distance fell in one codebook bin, so the "
                             f"codebook chose cache rate {rates[0]} at every compute step")
            per_stream = s["peak_cache_bytes"] / max(s["streams"], 1)
            row["cache_bytes_per_stream"] = per_stream
            row["cache_x_hidden"] = per_stream / hidden_bytes
            if s["computed_steps"] != n_full:
                notes.append(f"{name}: summary computed_steps {s['computed_steps']} but "
                             f"{n_full} calls classified computed")
        elif variant["kind"] == "easycache":
            peak = max(calls, key=lambda c: c.get("easycache_bytes", 0))
            if peak.get("easycache_streams"):
                per_stream = peak["easycache_bytes"] / peak["easycache_streams"]
                row["cache_bytes_per_stream"] = per_stream
                row["cache_x_hidden"] = per_stream / hidden_bytes
            row["pattern"] = "".join("C" if c["full"] else "." for c in res["calls"][0])
        n_cached = n_calls - n_full
        if n_cached and row["computed_step_fraction"] is not None:
            c_frac = row["computed_step_fraction"]
            f_est = (wall - t_other - n_full * t_step * c_frac) / (n_cached * t_step)
            row["cached_step_fraction_from_totals"] = f_est
            cross.append(f"{name} {f_est:.3f}")
        rows.append(row)

    report = {
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python",
                                                     "benchmarks/bench_wan.py", *sys.argv[1:]]),
        "machine": dict(machine_info(
            comfyui=comfy_host.VERSION,
            device=str(comfy.model_management.get_torch_device()),
        ), load_average_start=load_start, load_average_end=load_end),
        "setup": {
            "dim": dm.dim, "ffn": args.ffn, "heads": dm.num_heads, "layers": len(dm.blocks),
            "dtype": str(dtype).replace("torch.", ""), "latent": list(latent.shape),
            "tokens": tokens, "text_tokens": args.text_tokens, "steps": args.steps,
            "cfg": args.cfg, "seed": args.seed, "repeats": args.repeats,
            "calls_per_run": calls_per_run, "hidden_bytes": hidden_bytes,
            "uncached_call_s": t_step, "sampler_overhead_s": t_other,
        },
        "cross_check": "f from totals: " + (", ".join(cross) if cross else "n/a"),
        "rows": rows,
        "notes": notes,
        "total_seconds": time.perf_counter() - started,
    }
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_wan.md").write_text(markdown)
    (args.out / "bench_wan.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    print()
    print(markdown)
    print(f"wrote {args.out / 'bench_wan.md'} and bench_wan.json "
          f"in {report['total_seconds']:.0f}s total")


if __name__ == "__main__":
    main()
