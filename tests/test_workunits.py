"""ComfyUI's MultiGPU work units (comfy/multigpu.py) with AdaCache, on two CPU devices.

The MultiGPU CFG Split node gives the model a copy per extra device, and sampling runs cond and
uncond in two threads, each on its device's copy. This machine has no second GPU, so the host is
told it has two CPU devices (``cpu`` and ``cpu:1``: one shim, of the device list the node reads
to pick devices; threads, copies and scheduling are ComfyUI's own). Needs a host with work units
(ComfyUI 0.24 and later, e.g. ``ADACACHE_COMFYUI=<ComfyUI 0.33>``); skips on older hosts.
"""

from __future__ import annotations

import threading
import time

import comfy.model_management
import pytest
import torch
from comfy.patcher_extension import WrappersMP
from comfy_host import VERSION
from comfyui_adacache.adacache.schedule import CacheSchedule
from wan_fixtures import load_wan, node_model, patched, sample, summary_of

try:
    import comfy.multigpu  # noqa: F401
    from comfy_extras.nodes_multigpu import MultiGPUCFGSplitNode
except ImportError:
    pytest.skip(
        f"ComfyUI {VERSION} has no comfy/multigpu.py: MultiGPU work units arrived in ComfyUI "
        "0.24 (run with ADACACHE_COMFYUI naming a newer host)",
        allow_module_level=True,
    )
import comfy.ldm.wan.model as wan

TWO_CPUS = [torch.device("cpu"), torch.device("cpu", 1)]


@pytest.fixture(scope="module", autouse=True)
def two_cpu_devices():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(comfy.model_management, "get_all_torch_devices",
                   lambda exclude_current=False: list(TWO_CPUS))
        yield


@pytest.fixture
def head_calls(monkeypatch):
    """(Head module, thread) of every Wan head evaluation. Installed on the class before any
    model is loaded, so every hook's wrapped method is this one."""
    calls = []
    forward = wan.Head.forward

    def spy(self, *args, **kwargs):
        calls.append((self, threading.get_ident()))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(wan.Head, "forward", spy)
    return calls


def split(model):
    """The MultiGPU CFG Split node on ``model``, at most two devices. Models of earlier tests
    that were freed are dropped from the loaded list first, as ComfyUI's executor does between
    prompts (``cleanup_models_gc``, ``cleanup_models``): the node's device reuse reads that
    list and fails on them."""
    import comfy.model_management

    comfy.model_management.cleanup_models_gc()
    comfy.model_management.cleanup_models()
    return node_model(MultiGPUCFGSplitNode.execute(model, 2))


def copies(model) -> list:
    """The per-device copies ComfyUI made of ``model`` (as matched for its last sampling)."""
    return model.get_additional_models_with_key("multigpu")


def adacache_hooks_on_own_modules(patcher) -> int:
    """Checks that every AdaCache object hook of ``patcher`` wraps a method of ``patcher``'s
    own module at its path; returns how many hooks it checked."""
    checked = 0
    for name, hook in patcher.object_patches.items():
        if getattr(hook, "adacache_rebind", None) is None:
            continue
        module = patcher.get_model_object(name.rsplit(".", 1)[0])
        assert hook.adacache_original.__self__ is module, name
        checked += 1
    return checked


@pytest.mark.parametrize("order", ["apply then split", "split then apply"])
def test_work_units_run_the_single_device_schedule(order, head_calls):
    base = load_wan()
    single = patched(base)
    expected = sample(single)
    reference = summary_of(single)
    assert "." in reference["pattern"]
    head_calls.clear()

    model = split(patched(base)) if order == "apply then split" else patched(split(base))
    out = sample(model)
    s = summary_of(model, out)
    # cond and uncond really ran on two devices, in two threads, one call each per step
    assert [c.load_device for c in copies(model)] == [TWO_CPUS[1]]
    assert len({thread for _, thread in head_calls}) == 2
    assert s["stack_runs"] == 2 * reference["stack_runs"]

    assert s["pattern"] == reference["pattern"]
    assert [r["rate"] for r in s["trace"]] == [r["rate"] for r in reference["trace"]]
    for got, want in zip(s["trace"], reference["trace"], strict=True):
        assert (got["distance"] is None) == (want["distance"] is None)
        if want["distance"] is not None:
            assert got["distance"] == pytest.approx(want["distance"], rel=1e-4)
    # batched vs split cond/uncond differ only by float summation order (~1e-5 here)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    assert s["warnings"] == reference["warnings"]


def test_each_copy_hooks_its_own_modules(head_calls):
    """The stack-output hook installed on each device's copy wraps that copy's head (before
    the fix, the extra device's hook called the first device's head), in every thread."""
    model = split(patched(load_wan()))
    sample(model)
    primary = model.get_model_object("diffusion_model.head")
    (copy,) = copies(model)
    own = copy.get_model_object("diffusion_model.head")
    assert own is not primary
    assert adacache_hooks_on_own_modules(model) == adacache_hooks_on_own_modules(copy) == 1
    heads_by_thread = {}
    for head, thread in head_calls:
        heads_by_thread.setdefault(thread, set()).add(head)
    assert sorted(map(len, heads_by_thread.values())) == [1, 1]  # one head per thread
    ran = [head for head, _ in head_calls]
    assert ran.count(primary) == ran.count(own) == 12  # one call per step on each device


def test_calls_entering_a_step_together_reach_one_decision(monkeypatch):
    """Both threads' calls of every step enter the run at the same moment (a barrier outside
    AdaCache's wrapper), and deciding a step is slowed down so the second call arrives while the
    first is still deciding it; the run still decides each step once, as on one device."""
    base = load_wan()
    single = patched(base)
    expected = sample(single, steps=14)
    reference = summary_of(single)

    together = threading.Barrier(2, timeout=60)

    def enter_together(executor, *args, **kwargs):
        together.wait()
        return executor(*args, **kwargs)

    decide = CacheSchedule._decide

    def slow_decide(self, step):
        time.sleep(0.05)
        return decide(self, step)

    split_model = split(base)
    split_model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "together", enter_together)
    model = patched(split_model)  # AdaCache's wrapper runs inside the barrier's
    monkeypatch.setattr(CacheSchedule, "_decide", slow_decide)
    out = sample(model, steps=14)
    s = summary_of(model, out)
    assert s["pattern"] == reference["pattern"]
    assert [r["rate"] for r in s["trace"]] == [r["rate"] for r in reference["trace"]]
    assert [r["calls"] for r in s["trace"]] == [2] * len(s["trace"])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_every_kind_of_hook_is_rebound():
    """Wan VACE has the stack-output hook and one silenced-module hook per VACE block."""
    model = split(patched(load_wan("vace")))  # the node matches its copies already
    (copy,) = copies(model)
    assert copy.model is not model.model
    assert adacache_hooks_on_own_modules(model) == adacache_hooks_on_own_modules(copy) == 3


def test_a_deep_copy_of_the_patched_model_hooks_its_own_modules(head_calls):
    """Select Model Device moves a model to another GPU by deep-cloning its patcher (a fresh
    model from the loader); AdaCache applied before it then runs on the fresh model alone."""
    base = load_wan()
    single = patched(base)
    expected = sample(single)
    moved = single.deepclone_multigpu(new_load_device=TWO_CPUS[1])
    assert adacache_hooks_on_own_modules(moved) == 1
    head_calls.clear()
    out = sample(moved)
    assert {head for head, _ in head_calls} == {moved.get_model_object("diffusion_model.head")}
    assert summary_of(moved)["pattern"] == summary_of(single)["pattern"]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
