"""Split runs of a tiny ComfyUI Wan on CPU processes over gloo, for tests/test_shard.py.

Each rank is a spawned process that boots the real ComfyUI, sets up xfuser's real parallel
state (``init_distributed_environment`` + ``initialize_model_parallel``) and samples with xDiT
injected test-side the way Raylight injects it into a ComfyUI Wan:
- sequence parallel: the hidden state is padded at its end to a multiple of the sequence ranks
  and split before the first block (with its rope frequencies), gathered with xfuser's
  sequence group and trimmed after the last block, before the head (Raylight's
  ``usp_dit_forward``; here through the block patches, wrapping whatever patch is there);
  self-attention runs xfuser's ``xFuserLongContextAttention`` (yunchang's Ulysses all-to-all,
  attention type TORCH_MATH), as Raylight's ``make_xfuser_attention`` calls it;
- CFG parallel: a DIFFUSION_MODEL wrapper gives each CFG rank its half of the batch and
  gathers the results with xfuser's CFG group (Raylight's ``cfg_parallel_forward``).

Shims, at process start only (none replaces communication or attention): xfuser's attention
module is imported while ``torch.cuda.is_available()`` says True (its import guard; afterwards
yunchang picks the CPU device itself) and the process group is gloo (xfuser asks for nccl).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import traceback
from pathlib import Path

import torch

TIMEOUT_S = 420  # a whole spawn: imports (ComfyUI, xfuser) and every run of its cases (busy CPUs)


def spawn(cases: list[dict], tmp: Path, world: int = 2) -> list[list[dict]]:
    """Runs ``cases`` one after the other on the same ``world`` processes (xfuser's parallel
    state set up for each); per rank, per case, the results per run. A case: its CFG degree
    (the rest is sequence parallel) and ``runs``: name -> (config spec (see
    ``adacache_config``), None or {rank: spec}; the latent's sizes). Never hangs: ranks
    still alive after ``TIMEOUT_S`` are killed and the call fails."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(rank, world, cases, str(tmp)), daemon=True)
             for rank in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT_S
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0))
    hung = [rank for rank, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(10)
    if hung:
        raise TimeoutError(f"ranks {hung} did not finish within {TIMEOUT_S} s (a hang)")
    results = []
    for rank, p in enumerate(procs):
        path = tmp / f"rank{rank}.pt"
        if p.exitcode != 0 or not path.exists():
            error = tmp / f"rank{rank}.err"
            raise RuntimeError(f"rank {rank} failed (exit {p.exitcode}):\n"
                               + (error.read_text() if error.exists() else ""))
        results.append(torch.load(path, weights_only=False))
    return results


def _worker(rank: int, world: int, cases: list[dict], tmp: str) -> None:
    try:
        torch.set_num_threads(1)
        results = _run_cases(rank, world, cases, Path(tmp))
        torch.save(results, Path(tmp) / f"rank{rank}.pt")
    except BaseException:
        (Path(tmp) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _import_xfuser():
    """xfuser with its attention class: its import guard asks for CUDA, and its package
    check reads the GPU's name and capability, while it is imported."""
    shims = {"is_available": lambda: True, "get_device_name": lambda *_: "cpu",
             "get_device_capability": lambda *_: (9, 0), "current_device": lambda: 0}
    saved = {name: getattr(torch.cuda, name) for name in shims}
    for name, shim in shims.items():
        setattr(torch.cuda, name, shim)
    try:
        import xfuser.core.long_ctx_attention.hybrid.attn_layer  # noqa: F401
        import xfuser.core.long_ctx_attention.ring  # noqa: F401
    finally:
        for name, original in saved.items():
            setattr(torch.cuda, name, original)
    from xfuser.core.distributed import parallel_state

    return parallel_state


def _run_cases(rank: int, world: int, cases: list[dict], tmp: Path) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import comfy_host

    comfy_host.boot_host()
    comfy_host.import_pack()
    ps = _import_xfuser()
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world
    )
    ps.init_distributed_environment(rank=rank, world_size=world, backend="gloo")
    from comfyui_adacache.nodes.xdit import apply_in_worker

    results = []
    for case in cases:
        cfg = case.get("cfg_degree", 1)
        ps.initialize_model_parallel(
            classifier_free_guidance_degree=cfg, sequence_parallel_degree=world // cfg,
            ulysses_degree=world // cfg, ring_degree=1, backend="gloo",
        )
        runs = {}
        for name, (config, lat) in case["runs"].items():
            config = config.get(rank, config) if isinstance(config, dict) else config  # a rank's
            config = adacache_config(config)
            model = patched_wan(config, apply=apply_in_worker)  # what a Raylight worker runs
            runs[name] = run_wan(inject_xdit(model, ps), lat)
        results.append(runs)
        torch.distributed.barrier()
        ps.destroy_model_parallel()
    return results


def adacache_config(spec: dict | None):
    """An AdaCacheConfig from plain data (what a spawned process can unpickle before it
    imports the pack): a preset, or a codebook (thresholds, rates), and MoReg settings."""
    if spec is None:
        return None
    from comfyui_adacache.adacache import AdaCacheConfig, Codebook, MoRegSettings

    moreg = spec.get("moreg")
    codebook = spec.get("codebook")
    return AdaCacheConfig(preset=spec.get("preset", "custom"),
                          codebook=None if codebook is None else Codebook(*codebook),
                          moreg=None if moreg is None else MoRegSettings(**moreg))


def patched_wan(config=None, apply=None):
    """The tiny Wan of these tests (two blocks, two heads: Ulysses splits heads), with AdaCache if
    ``config`` (an AdaCacheConfig)."""
    from comfyui_adacache.nodes.patch import apply_adacache
    from wan_fixtures import load_wan

    model = load_wan("t2v", layers=2, heads=2)
    return model if config is None else (apply or apply_adacache)(model, config)


def run_wan(model, lat: dict, steps: int = 8) -> dict:
    """The sampled latent (``wan_fixtures.latent(**lat)``) and the AdaCache summary (None
    without AdaCache)."""
    from wan_fixtures import latent, sample

    out = sample(model, lat=latent(**lat), steps=steps)
    handle = model.model_options["transformer_options"].get("adacache_handle")
    return {"out": out, "summary": handle.summary_for(out) if handle is not None else None}


def inject_xdit(model, ps):
    """A clone of ``model`` with xDiT's sequence and CFG parallelism (see the module doc)."""
    import comfy.patcher_extension
    from xfuser.core.long_ctx_attention import xFuserLongContextAttention
    from yunchang.kernels import AttnType

    model = model.clone()
    sp, cfg = ps.get_sp_group(), ps.get_cfg_group()
    diffusion_model = model.get_model_object("diffusion_model")
    if cfg.world_size > 1:
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                                   "test_xdit_cfg", _cfg_parallel(cfg))
    if sp.world_size == 1:
        return model
    attention = xFuserLongContextAttention(use_sync=False, attn_type=AttnType.TORCH_MATH)
    in_self_attention = []  # marks the self-attention modules' calls (forward hooks)

    def enter(*_):
        in_self_attention.append(True)

    def leave(*_):
        in_self_attention.pop()

    for block in diffusion_model.blocks:
        block.self_attn.register_forward_pre_hook(enter)
        block.self_attn.register_forward_hook(leave)

    def xfuser_self_attention(func, q, k, v, heads, *args, **kwargs):
        if not in_self_attention:  # cross-attention: the shard's queries, the whole text
            return func(q, k, v, heads, *args, **kwargs)
        b, _, dim = q.shape
        q, k, v = (t.view(b, -1, heads, dim // heads) for t in (q, k, v))
        return attention(None, q, k, v).reshape(b, -1, dim)

    options = model.model_options.setdefault("transformer_options", {})
    options["optimized_attention_override"] = xfuser_self_attention
    replaced = options.get("patches_replace", {}).get("dit", {})
    last = len(diffusion_model.blocks) - 1
    state = {}

    def split(args):
        x, pe = args["img"], args["pe"]
        state["length"] = x.shape[1]
        pad = -x.shape[1] % sp.world_size
        x = torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], dim=1)
        pe = torch.cat([pe, pe.new_zeros(pe.shape[0], pad, *pe.shape[2:])], dim=1)
        chunk = lambda t: t.chunk(sp.world_size, dim=1)[sp.rank_in_group]  # noqa: E731
        state["pe"] = chunk(pe)
        return {**args, "img": chunk(x)}

    def gather(out):
        return {**out, "img": sp.all_gather(out["img"].contiguous(), dim=1)[:, :state["length"]]}

    def wrap(index, inner):
        def xdit_block(args, extra):
            run = inner if inner is not None else lambda a, e: e["original_block"](a)
            if index == 0:
                args = split(args)
            args = {**args, "pe": state["pe"]}  # the model passes every block the whole pe
            if index == last:  # the block's own patch sees the shard; the head the whole
                return gather(run(args, extra))
            return run(args, extra)

        if inner is not None:
            xdit_block.__dict__.update(inner.__dict__)  # the inner patch's own marks
        return xdit_block

    for index in range(last + 1):
        key = ("double_block", index)
        model.set_model_patch_replace(wrap(index, replaced.get(key)), "dit", *key)
    return model


def _cfg_parallel(group):
    """Each CFG rank runs its part of a batch of exactly ``world`` entries; gathered after."""

    def xdit_cfg(executor, x, timestep, context, clip_fea=None, time_dim_concat=None,
                 transformer_options=None, **kwargs):
        n, rank = group.world_size, group.rank_in_group

        def part(t):
            if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == n:
                return t.chunk(n, dim=0)[rank]
            return t

        if x.shape[0] != n:
            raise ValueError("CFG parallel needs cond and uncond in one batch (cfg > 1)")
        kwargs = {k: part(v) for k, v in kwargs.items()}
        out = executor(part(x), part(timestep), part(context), part(clip_fea),
                       part(time_dim_concat), transformer_options, **kwargs)
        return group.all_gather(out.contiguous(), dim=0)

    return xdit_cfg
