"""ComfyUI's MultiGPU work units (comfy/multigpu.py, ComfyUI 0.24 and later).

The MultiGPU node gives the patched model one copy per extra device, and sampling runs conds in
threads, each on its device's copy. A copy's ModelPatcher is a clone of the patched one
(``deepclone_multigpu``, then ``match_multigpu_clones`` before every sampling call), so it
carries AdaCache's object patches, whose hooks wrap the first copy's modules. The clone
callbacks registered here rebind every such hook to the same module of the copy it is installed
on. What the threads share at run time (the run, in the call's transformer_options) is safe
under the run's lock (adacache/runtime.py).
"""

from __future__ import annotations

import types

from comfy.patcher_extension import CallbacksMP

# the callbacks (source patcher, new per-device copy); hosts without work units have neither
COPY_CALLBACKS = tuple(
    getattr(CallbacksMP, name)
    for name in ("ON_DEEPCLONE_MULTIGPU", "ON_MATCH_MULTIGPU_CLONES")
    if hasattr(CallbacksMP, name)
)


def add_copy_callbacks(model, key: str) -> None:
    """Registers ``rebind_to_copy`` on ``model`` (once per key)."""
    for call_type in COPY_CALLBACKS:
        model.remove_callbacks_with_key(call_type, key)
        model.add_callback_with_key(call_type, key, rebind_to_copy)


def rebind_to_copy(source, copy) -> None:
    """Each AdaCache object hook of ``copy`` (hooks carry ``adacache_rebind``) wraps the method
    of ``copy``'s own module where it wrapped that of ``source``'s. A hook over another node's
    object patch keeps it as it is: rebinding that patch is its own node's business."""
    for name, hook in list(copy.object_patches.items()):
        rebind = getattr(hook, "adacache_rebind", None)
        original = getattr(hook, "adacache_original", None)
        if rebind is None or "." not in name:
            continue
        path = name.rsplit(".", 1)[0]  # "diffusion_model.head.forward" -> its module
        owner = getattr(original, "__self__", None)
        if owner is None or owner is not source.get_model_object(path):
            continue
        own = copy.get_model_object(path)
        copy.add_object_patch(name, rebind(types.MethodType(original.__func__, own)))
