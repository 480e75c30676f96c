"""Patches a cloned ModelPatcher with AdaCache: wrappers, block replacements, object hooks.

Where a run lives: the OUTER_SAMPLE wrapper creates one AdaCacheRun per sampling call and puts
it in that call's own ``transformer_options`` (the guider's per-sample copy of the model
options, which ComfyUI copies into every model call's options), keyed by the Apply node's
handle. The APPLY_MODEL wrapper takes it from its call's options and, for the duration of the
call, makes it visible to the block / object hooks through a context variable (thread-local),
since object hooks do not receive ``transformer_options``. No run is ever kept on the handle or
the model, which every clone shares, so two samplers on one patched model (threads) each see
only their own run. ComfyUI's MultiGPU work units run one sampling call's conds in threads on
per-device model copies: those calls share the call's run (safe under its lock), and each copy's
object hooks wrap its own modules (workunits.py).
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import torch
from comfy.patcher_extension import WrappersMP

from ..adacache import (
    AUTO_PRESETS,
    BLOCKS,
    CONTROL_HINTS,
    MODEL_PATCHES,
    WHOLE,
    AdaCacheConfig,
    AdaCacheRun,
    StreamKey,
    block_keys,
    equivalent_steps,
    family_for,
    format_summary,
    format_trace,
    parse_metric_blocks,
)
from ..adacache.families import video_latent_shape
from ..adacache.shard import SHARD_OPTION
from .auto import resolve_auto
from .hooks import (
    ACTIVE,
    AdaCacheHandle,
    block_patch,
    output_hook,
    silenced_hook,
    stack_intact,
    whole_model_hook,
)
from .live_trace import LIVE, LiveTrace
from .run_setup import RUNS, continued_calibration, run_setup
from .workunits import add_copy_callbacks

log = logging.getLogger("AdaCache")
KEY = "adacache"
# transformer_options["patches"] lists that run before the first block (part of the stack
# input, so a reused residual is added on top of them); any other non-empty list runs between
# or inside blocks outside block replacement, and forces compute.
PATCHES_BEFORE_STACK = frozenset({"post_input"})


NATIVE_CACHE = "easycache"  # transformer_options entry of native EasyCache and LazyCache


def check_model(value, node: str, name: str = "model"):
    """``value`` if it is a MODEL (a ModelPatcher), else a clear error naming the input."""
    if not isinstance(value, comfy.model_patcher.ModelPatcher):
        raise ValueError(
            f"{node}: '{name}' got {type(value).__name__} {str(value)[:60]!r}; connect a MODEL "
            "output (literal values are not accepted)"
        )
    return value


def native_cache(model_options: dict) -> str | None:
    """"EasyCache" or "LazyCache" when ComfyUI's native cache is on these model options."""
    holder = (model_options.get("transformer_options") or {}).get(NATIVE_CACHE)
    if holder is None:
        return None
    return "LazyCache" if "Lazy" in type(holder).__name__ else "EasyCache"


def native_cache_conflict(node_id, native: str) -> str:
    return (
        f"AdaCache Apply (node {node_id}) and ComfyUI's native {native} are both on this "
        f"model: each skips steps of the other, so the output would be {native}'s and "
        f"AdaCache's report wrong. Remove the {native} node or AdaCache Apply"
    )


def _apply_model_wrapper(handle: AdaCacheHandle):
    def adacache_apply_model(executor, *args, **kwargs):
        x, sigma = args[0], args[1]
        transformer_options = args[5] if len(args) > 5 else kwargs.get("transformer_options", {})
        run = (transformer_options.get(RUNS) or {}).get(handle)
        if run is None:
            return executor(*args, **kwargs)
        family = handle.family
        patches = _between_block_patches(transformer_options)
        reason = CONTROL_HINTS if _control(args, kwargs) else MODEL_PATCHES if patches else None
        if patches:
            run.warn_once(f"model patches between blocks ({', '.join(patches)}) run on every "
                          "call that carries them: those calls run the whole stack")
        active = ACTIVE.set((*ACTIVE.get(), (handle, run)))
        try:
            with run.lock:  # work-unit threads: one step change, seen and sent once
                step_before = run.schedule.current
                run.begin_call(
                    float(sigma.max()),
                    _stream_keys(transformer_options, x),
                    video_latent_shape(x, kwargs),  # packed audio+video latents: the video's
                    stack_intact(handle, transformer_options)
                    and not any(k in transformer_options for k in family.bypass_options),
                    compute_reason=reason,
                    tail_tokens=family.tail_tokens(kwargs),
                )
                live = LIVE.get(run)
                if live is not None:  # the browser's view: a step's decision is final
                    live.step_entered(step_before, run.schedule.current)
            try:
                return executor(*args, **kwargs)
            finally:
                run.end_call()
        finally:
            ACTIVE.reset(active)

    return adacache_apply_model


def _stream_keys(transformer_options: dict, x: torch.Tensor) -> list[StreamKey]:
    """One key per batch entry: its cond uuid, the context window the host sliced the latent
    to (comfy/context_windows.py calls the model once per window with the same uuids) and the
    per-entry latent shape."""
    roles = transformer_options.get("cond_or_uncond") or []
    conds = transformer_options.get("uuids") or roles or [0]
    window = transformer_options.get("context_window")
    if window is not None:
        index_list = getattr(window, "index_list", None)
        window = (
            (getattr(window, "dim", None), tuple(int(i) for i in index_list))
            if index_list is not None else ("window", id(window))  # unknown kind: never shared
        )
    roles = roles if len(roles) == len(conds) else [None] * len(conds)
    return [StreamKey(c, window, tuple(x.shape[1:]), role)
            for c, role in zip(conds, roles, strict=True)]


def _between_block_patches(transformer_options: dict) -> list[str]:
    """Names of the non-empty ``transformer_options["patches"]`` lists that do not run before
    the stack (Qwen-Image's DiffSynth ControlNet ``double_block``, Lumina2 / Z-Image control
    patches, newer WanModel's per-block patches): their output would be in a stored residual
    and added again by the patch on a reused call."""
    patches = transformer_options.get("patches") or {}
    return sorted(
        str(name) for name, entries in patches.items()
        if entries and name not in PATCHES_BEFORE_STACK
    )


def _control(args, kwargs):
    return args[4] if len(args) > 4 else kwargs.get("control")


def _outer_sample_wrapper(handle: AdaCacheHandle):
    def adacache_outer_sample(executor, *args, **kwargs):
        guider = executor.class_obj
        native = native_cache(guider.model_options)
        if native is not None:
            raise ValueError(native_cache_conflict(handle.node_id, native))
        sigmas = [float(s) for s in args[3]]
        # The sampling object with object patches (ModelSamplingSD3, shift overrides) applied.
        sampling = guider.model_patcher.get_model_object("model_sampling")
        config = handle.config
        positions = [_schedule_position(sampling, s) for s in sigmas]
        setup = _setup_or_none(guider, args, positions)
        continued = None
        if config.preset == "calibrate" or config.preset in AUTO_PRESETS:
            # the next slice of a calibration's schedule (KSamplerAdvanced)?
            latent = tuple((setup or {}).get("latent") or ())
            continued = continued_calibration(handle, sigmas, latent)
        if config.preset in AUTO_PRESETS:  # a plan for this model and setup, or calibrate
            config = resolve_auto(config, setup, continuing=continued is not None)
        if config.preset != "calibrate":
            continued = None
        high = float(sampling.percent_to_sigma(config.start_percent))
        low = float(sampling.percent_to_sigma(config.end_percent))

        steps = equivalent_steps(positions, 1.0)
        run = AdaCacheRun(
            config,
            handle.family,
            max(len(handle.keys), 1),
            sigmas,
            schedule_steps=steps,
            cache_sigma_range=(high, low),
            check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted,
            cache_device=(
                comfy.model_management.unet_offload_device() if config.offload_cache else None
            ),
            # where this run starts in the whole schedule (KSamplerAdvanced, denoise < 1)
            first_step=round((1.0 - positions[0]) * steps) if positions else 0,
            positions=positions,
            setup=setup,
            carry=continued[0] if continued else None,
            # an engine adapter's place for this rank in a split run (adacache/shard.py)
            shard=guider.model_options.get("transformer_options", {}).get(SHARD_OPTION),
        )
        run.calibration_run_id = continued[1] if continued else None
        live = LIVE[run] = LiveTrace(
            handle.node_id, run, calibration=config.preset == "calibrate",
            sender=handle.live_sender,
        )
        # the guider's per-sample copy of the model options: this sampling call's own
        options = guider.model_options.setdefault("transformer_options", {})
        runs = options[RUNS] = {**options.get(RUNS, {}), handle: run}
        output = None
        try:
            output = executor(*args, **kwargs)
            return output
        finally:
            runs.pop(handle, None)
            summary = run.finish(interrupted=output is None)
            handle.last_summary = summary
            handle.remember(output, summary)
            log.info(format_summary(summary))
            if config.verbose:
                log.info("AdaCache trace\n" + format_trace(summary))
            live.finish(summary)  # the trace and timings to the browser (never raises)

    return adacache_outer_sample


def _setup_or_none(guider, args, positions) -> dict | None:
    """What this run is (run_setup); None if the host's objects do not say (never raises)."""
    try:
        return run_setup(guider, args, positions)
    except Exception as e:
        log.debug("AdaCache: no run setup: %s", e)
        return None


def _schedule_position(sampling, sigma: float) -> float:
    """Where ``sigma`` sits in the model's noise schedule, 0 (sigma_min) .. 1 (sigma_max).

    Schedulers space steps by this position (not by sigma, which a shift distorts), so a
    KSamplerAdvanced slice can be measured against the full schedule's density.
    """
    table = getattr(sampling, "sigmas", None)
    if table is None or len(table) < 2:
        lo, hi = float(sampling.sigma_min), float(sampling.sigma_max)
        return min(max((sigma - lo) / max(hi - lo, 1e-12), 0.0), 1.0)
    table = table.float().cpu()
    index = torch.searchsorted(table, torch.tensor([sigma], dtype=table.dtype)).item()
    if 0 < index < len(table):  # interpolate inside the bracketing table entries
        lo, hi = table[index - 1].item(), table[index].item()
        index = index - 1 + (sigma - lo) / max(hi - lo, 1e-12)
    return min(max(index / (len(table) - 1), 0.0), 1.0)


def apply_adacache(model, config: AdaCacheConfig, node_id=None):
    """Returns a clone of ``model`` (a ModelPatcher) with AdaCache patched in."""
    native = native_cache(model.model_options)
    if native is not None:
        raise ValueError(native_cache_conflict(node_id, native))
    diffusion_model = model.get_model_object("diffusion_model")
    family = family_for(diffusion_model)
    model = model.clone()
    keys = block_keys(family, diffusion_model)
    if family.mode == BLOCKS and not keys:
        raise ValueError(f"{type(diffusion_model).__name__} has no transformer blocks to cache")
    handle = AdaCacheHandle(config, family, keys, node_id)
    if family.mode == BLOCKS:
        parse_metric_blocks(config.metric_blocks, len(keys))  # fail now, not at sampling time

    transformer_options = model.model_options.setdefault("transformer_options", {})
    existing = transformer_options.get("patches_replace", {}).get("dit", {})
    stacked = any(getattr(existing.get(k), "adacache_handle", None) for k in keys)
    if stacked:
        log.warning("AdaCache Apply is applied twice to one model; the later node's settings win")
    for position, (kind, index) in enumerate(keys):
        previous = existing.get((kind, index))
        while getattr(previous, "adacache_handle", None) is not None:  # replace, never nest
            previous = previous.adacache_previous
        model.set_model_patch_replace(block_patch(handle, position, previous), "dit", kind, index)

    if family.mode == WHOLE:
        name = "diffusion_model.forward"
        model.add_object_patch(name, whole_model_hook(handle, _unhooked(model, name)))
    for path in family.output_modules:  # e.g. WanDancer runs head or head_global
        if _module_names(diffusion_model, path):
            name = f"diffusion_model.{path}.forward"
            model.add_object_patch(name, output_hook(handle, _unhooked(model, name)))
    for path, returns in family.silenced_modules:
        for name in _module_names(diffusion_model, path):
            name = f"diffusion_model.{name}.forward"
            model.add_object_patch(name, silenced_hook(handle, returns, _unhooked(model, name)))

    for wrapper_type in (WrappersMP.OUTER_SAMPLE, WrappersMP.APPLY_MODEL):
        model.remove_wrappers_with_key(wrapper_type, KEY)
    model.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, KEY, _outer_sample_wrapper(handle))
    model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, KEY, _apply_model_wrapper(handle))
    add_copy_callbacks(model, KEY)  # MultiGPU work units: per-device copies' hooks
    model.model_options["transformer_options"]["adacache_handle"] = handle
    return model


def _module_names(diffusion_model, path: str) -> list[str]:
    """``path`` (dotted) if it names a module, its items if a module list, [] if absent."""
    module = diffusion_model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return []
    if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
        return [f"{path}.{j}" for j in range(len(module))]
    return [path]


def _unhooked(model, name: str):
    """The callable at ``name``, looking through an earlier AdaCache hook."""
    current = model.get_model_object(name)
    while getattr(current, "adacache_original", None) is not None:
        current = current.adacache_original
    return current
