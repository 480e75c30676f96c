"""The handle one AdaCache Apply shares with every clone of its model, and the hooks it
installs: block replacements (``patches_replace["dit"]``) and object hooks on the stack output,
silenced side modules and the whole model. A hook finds the run of the model call in progress
in its own context (thread) through ``ACTIVE`` (set by patch.py's APPLY_MODEL wrapper), never
on the handle; it carries ``adacache_original`` (a later Apply unwraps, never nests) and
``adacache_rebind`` (workunits.py puts it on a device copy's own module).
"""

from __future__ import annotations

import contextvars
import functools

import torch

from ..adacache import AdaCacheConfig, AdaCacheRun

RECENT_OUTPUTS = 8  # summaries kept per handle, by the latent they produced
# ((handle, run), ...) of the model calls in progress in this context (thread)
ACTIVE: contextvars.ContextVar[tuple] = contextvars.ContextVar("adacache_active", default=())


def latent_fingerprint(samples) -> tuple | None:
    """A cheap identity of a sampled latent: its shape and a strided subsample of its values
    (float32, CPU), as the sampler returns it."""
    if not isinstance(samples, torch.Tensor) or getattr(samples, "is_nested", False):
        return None
    flat = samples.detach().reshape(-1)
    picked = flat[:: max(flat.numel() // 4096, 1)][:4096].to("cpu", torch.float32)
    return tuple(samples.shape), picked


def same_latent(a: tuple | None, b: tuple | None) -> bool:
    """Whether two fingerprints are of one latent; tolerant of a lower-precision copy (a host
    that moves the sampler's output to a bf16/fp16 intermediate dtype: half a bf16 step),
    not of two different runs (their latents differ by more somewhere in 4,096 values)."""
    if a is None or b is None or a[0] != b[0] or a[1].shape != b[1].shape:
        return False
    return bool(torch.allclose(a[1], b[1], rtol=5e-3, atol=1e-5, equal_nan=True))


class AdaCacheHandle:
    """Shared by the patches of one AdaCache Apply (and by every clone of the patched model)."""

    def __init__(self, config: AdaCacheConfig, family, keys, node_id=None):
        self.config = config
        self.family = family
        self.keys = keys
        self.node_id = node_id
        self.live_sender = None  # where the live trace goes; None: this process's PromptServer
        self.last_summary: dict | None = None
        self.recent: list[tuple[tuple, dict]] = []  # (latent fingerprint, summary), newest last

    def remember(self, output, summary: dict) -> None:
        fingerprint = latent_fingerprint(output)
        if fingerprint is not None:
            self.recent = [*self.recent, (fingerprint, summary)][-RECENT_OUTPUTS:]

    def summary_for(self, samples) -> dict | None:
        """The summary of the run that produced ``samples``, if it is one of the recent ones."""
        fingerprint = latent_fingerprint(samples)
        for known, summary in reversed(self.recent):
            if same_latent(known, fingerprint):
                return summary
        return None

    @property
    def run(self) -> AdaCacheRun | None:
        """The run of the model call in progress in this thread, if any (read-only)."""
        return active_run(self)

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; every clone shares this one handle,
        # as its patches (closures over it) do.
        return self


def block_patch(handle: AdaCacheHandle, position: int, previous):
    def adacache_block(args, extra):
        if previous is not None:
            def run_inner(a):
                return previous(a, extra)
        else:
            run_inner = extra["original_block"]
        run = active_run(handle)
        if run is None:
            return run_inner(args)
        return run.block(position, args, run_inner)

    adacache_block.adacache_handle = handle
    adacache_block.adacache_previous = previous
    return adacache_block


def output_hook(handle: AdaCacheHandle, original):
    def adacache_stack_output(x, *args, **kwargs):
        run = active_run(handle)
        if run is not None:
            run.stack_output(x)
        return original(x, *args, **kwargs)

    adacache_stack_output.adacache_original = original  # a later Apply unwraps, never nests
    adacache_stack_output.adacache_rebind = functools.partial(output_hook, handle)  # workunits
    return adacache_stack_output


def silenced_hook(handle: AdaCacheHandle, returns: str, original):
    def adacache_silenced_module(*args, **kwargs):
        run = active_run(handle)
        if run is None:
            return original(*args, **kwargs)
        return run.silenced_module(returns, original, *args, **kwargs)

    adacache_silenced_module.adacache_original = original
    adacache_silenced_module.adacache_rebind = functools.partial(silenced_hook, handle, returns)
    return adacache_silenced_module


def whole_model_hook(handle: AdaCacheHandle, original):
    def adacache_whole_model(x, *args, **kwargs):
        run = active_run(handle)
        if run is None:
            return original(x, *args, **kwargs)
        return run.whole_model(x, lambda: original(x, *args, **kwargs))

    adacache_whole_model.adacache_original = original
    adacache_whole_model.adacache_rebind = functools.partial(whole_model_hook, handle)
    return adacache_whole_model


def stack_intact(handle: AdaCacheHandle, transformer_options: dict) -> bool:
    replaced = transformer_options.get("patches_replace", {}).get("dit", {})
    return all(getattr(replaced.get(k), "adacache_handle", None) is handle for k in handle.keys)


def active_run(handle: AdaCacheHandle) -> AdaCacheRun | None:
    for owner, run in reversed(ACTIVE.get()):
        if owner is handle:
            return run
    return None
