"""Call patterns that must never reuse the wrong residual (real ComfyUI nodes, tiny models, CPU).

A ``StackProbe`` watches the real Wan stack from outside: the patch-embedding tokens going in
and the hidden state reaching the head, per model call and per stream (cond uuid within its
context window). On a call whose blocks did not run, what was added must be exactly the stream's
own residual from the run's last compute step.
"""

from __future__ import annotations

import inspect
import threading
import time

import comfy.context_windows
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.patcher_extension
import comfy.sample
import comfy.sd
import comfy.taesd.taehv
import pytest
import torch
from comfy.patcher_extension import WrappersMP
from comfy_extras.nodes_context_windows import ContextWindowsManualNode, WanContextWindowsManualNode
from comfy_extras.nodes_model_patch import (
    QwenImageBlockWiseControlNet,
    QwenImageDiffsynthControlnet,
)
from comfy_extras.nodes_slg import SkipLayerGuidanceDiTSimple
from comfyui_adacache.adacache import MoRegSettings
from test_families_image import FLUX_CONFIG, QWEN_CONFIG, from_config
from wan_fixtures import (
    NEVER_REUSE,
    BlockCounter,
    handle_of,
    latent,
    load_wan,
    node_model,
    patched,
    random_state_dict,
    sample,
    summary_of,
)


@pytest.fixture(scope="module")
def wan():
    return load_wan("t2v")


def _step_of(transformer_options) -> int:
    sigmas = transformer_options["sample_sigmas"]
    sigma = transformer_options["sigmas"].max()
    return int(torch.nonzero(torch.isclose(sigmas, sigma, rtol=1e-4))[0].item())


class StackProbe:
    """Per stream of every model call: its step, window, whether the blocks ran, and what the
    stack added (head input minus patch-embedding tokens)."""

    def __init__(self, model):
        dm = model.model.diffusion_model
        self.records: list[dict] = []
        self._call: dict | None = None
        self._stack_in = None
        self._hooks = [
            dm.patch_embedding.register_forward_hook(self._embedded),
            dm.blocks[0].register_forward_pre_hook(self._block_ran),
            dm.head.register_forward_pre_hook(self._head),
        ]
        self.model = model
        # registered after AdaCache's wrapper, so it runs inside it
        model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "probe", self._wrapper)

    def _wrapper(self, executor, *args, **kwargs):
        options = args[5] if len(args) > 5 else kwargs["transformer_options"]
        window = options.get("context_window")
        replaced = options.get("patches_replace", {}).get("dit", {})
        self._call = {
            "step": _step_of(options),
            "window": None if window is None else tuple(window.index_list),
            "uuids": list(options["uuids"]),
            "foreign": any(not hasattr(p, "adacache_handle") for p in replaced.values()),
            "ran": False,
        }
        try:
            return executor(*args, **kwargs)
        finally:
            self._call = None

    def _embedded(self, module, inputs, output):
        self._stack_in = output.flatten(2).transpose(1, 2).detach().clone()

    def _block_ran(self, *_):
        if self._call is not None:
            self._call["ran"] = True

    def _head(self, module, inputs):
        call = self._call
        added = inputs[0].detach() - self._stack_in
        for i, uuid in enumerate(call["uuids"]):
            self.records.append({**call, "uuid": uuid, "added": added[i:i + 1].clone()})

    def close(self):
        for h in self._hooks:
            h.remove()
        self.model.remove_wrappers_with_key(WrappersMP.APPLY_MODEL, "probe")

    def check_reuse(self, trace: list[dict]) -> int:
        """Every reused stream added its own residual from the last compute step; returns how
        many reused stream evaluations were checked."""
        computed = [r["step"] for r in trace if r["computed"]]
        last_computed: dict = {}
        checked = 0
        for rec in self.records:
            key = (rec["window"], rec["uuid"])
            if rec["foreign"]:
                continue  # another pack's replacement ran the stack: nothing stored, nothing read
            if rec["ran"]:
                last_computed[key] = rec
                continue
            source = last_computed.get(key)
            assert source is not None, f"step {rec['step']} reused {key} that was never computed"
            last_step = max(s for s in computed if s < rec["step"])
            assert source["step"] == last_step, (
                f"step {rec['step']} reused {key} from step {source['step']}, "
                f"the last compute step was {last_step}"
            )
            torch.testing.assert_close(rec["added"], source["added"], rtol=1e-4, atol=1e-5)
            checked += 1
        return checked


def probed_sample(model, **kw):
    probe = StackProbe(model)
    try:
        out = sample(model, **kw)
    finally:
        probe.close()
    return out, probe


# -- context windows ---------------------------------------------------------------------------
def _windows_node(node_cls, model, **kwargs):
    """The host's context-window node; newer hosts require ``freenoise`` (off here)."""
    if "freenoise" in inspect.signature(node_cls.execute).parameters:
        kwargs.setdefault("freenoise", False)
    return node_model(node_cls.execute(model, **kwargs))


def _manual_windows(model):  # 9 latent frames -> windows of 5 overlapping by 2, along dim 2
    return _windows_node(
        ContextWindowsManualNode, model, context_length=5, context_overlap=2,
        context_schedule=comfy.context_windows.ContextSchedules.STATIC_STANDARD,
        context_stride=1, closed_loop=False,
        fuse_method=comfy.context_windows.ContextFuseMethods.PYRAMID, dim=2)


def _wan_windows(model):  # pixel-frame sizes: 17 -> 5 latent frames, 8 -> overlap 2
    return _windows_node(
        WanContextWindowsManualNode, model, context_length=17, context_overlap=8,
        context_schedule=comfy.context_windows.ContextSchedules.STATIC_STANDARD,
        context_stride=1, closed_loop=False,
        fuse_method=comfy.context_windows.ContextFuseMethods.PYRAMID)


@pytest.mark.parametrize("windows", [_manual_windows, _wan_windows], ids=["manual", "wan"])
def test_context_windows_each_window_reuses_its_own_residual(wan, windows):
    lat = latent(frames=9, size=8)
    windowed = windows(wan)
    vanilla = sample(windowed, lat=lat)
    assert torch.equal(sample(patched(windowed, NEVER_REUSE), lat=lat), vanilla)

    fast = patched(windowed)
    out, probe = probed_sample(fast, lat=lat)
    s = summary_of(fast, out)
    assert len({r["window"] for r in probe.records}) == 3  # the windows really ran
    assert s["reused_steps"] > 0 and torch.isfinite(out).all()
    assert probe.check_reuse(s["trace"]) >= 3 * 2 * s["reused_steps"]  # windows x streams
    assert s["streams"] == 3 * 2


def test_context_windows_that_move_every_step_compute_where_a_window_is_new(wan):
    """Uniform schedules shift their windows with the step: a window without a residual of its
    own from the last compute step computes; nothing is ever reused across windows."""
    lat = latent(frames=9, size=8)
    windowed = _windows_node(
        ContextWindowsManualNode, wan, context_length=5, context_overlap=2,
        context_schedule=comfy.context_windows.ContextSchedules.UNIFORM_LOOPED,
        context_stride=1, closed_loop=False,
        fuse_method=comfy.context_windows.ContextFuseMethods.PYRAMID, dim=2)
    fast = patched(windowed)
    out, probe = probed_sample(fast, lat=lat)
    s = summary_of(fast, out)
    assert len({r["window"] for r in probe.records}) > 3  # the windows really moved
    # windows met at an older compute step are stale, never-seen ones have no cache
    window_reasons = {"compute: stale cache", "compute: context window without its own cache"}
    assert window_reasons & set(s["call_reasons"])
    probe.check_reuse(s["trace"])
    assert torch.isfinite(out).all()


# -- streams that drop out -----------------------------------------------------------------------
def _skip_uncond_at(model, skipped_step: int):
    """A guider-side function that evaluates only the positive at one step (as guiders that
    drop the negative for part of the schedule do) and uses it for both."""
    def calc_cond_batch(args):
        options = args["model_options"]
        if _step_of({**options["transformer_options"], "sigmas": args["sigma"]}) == skipped_step:
            (cond_out,) = comfy.samplers.calc_cond_batch(
                args["model"], [args["conds"][0]], args["input"], args["sigma"], options)
            return [cond_out, cond_out]
        return comfy.samplers.calc_cond_batch(
            args["model"], args["conds"], args["input"], args["sigma"], options)

    m = model.clone()
    m.set_model_sampler_calc_cond_batch_function(calc_cond_batch)
    return m


def test_a_stream_missing_at_a_compute_step_is_computed_at_the_next_reused_step(wan):
    # ALWAYS_REUSE at 12 steps computes 0, 1, 5, 9, 10, 11; the negative skips step 5
    fast = patched(_skip_uncond_at(wan, 5))
    out, probe = probed_sample(fast, steps=12)
    trace = summary_of(fast, out)["trace"]
    assert [r["step"] for r in trace if r["computed"]][:3] == [0, 1, 5]
    assert trace[6]["computed"] and trace[6]["reason"] == "stale cache"
    assert [p["reason"] for p in trace[6]["call_plans"]] == ["stale cache"]
    assert probe.check_reuse(trace) > 0 and torch.isfinite(out).all()


def _relative_error(a, b) -> float:
    return ((a - b).abs().sum() / b.abs().sum()).item()


def test_skip_layer_guidance_over_a_middle_range_never_reuses_a_stale_negative(wan):
    """SLG (Simple) replaces the negative's pass over 20%..50% of the schedule: those passes
    run as asked and are never stored, so the negative's residual is stale after the range
    (here compute step 9 lies inside it and reused step 11 just after it).

    Tolerance: AdaCache's error against the same workflow without AdaCache must stay within
    twice its error on the plain workflow (same codebook, same steps); reusing the stale
    negative is what would break it."""
    def slg(m):
        return node_model(SkipLayerGuidanceDiTSimple.execute(
            m, start_percent=0.2, end_percent=0.5, double_layers="1, 2"))

    steps = 20
    vanilla_slg = sample(slg(wan), steps=steps)
    assert torch.equal(sample(patched(slg(wan), NEVER_REUSE), steps=steps), vanilla_slg)
    fast = patched(slg(wan))
    out, probe = probed_sample(fast, steps=steps)
    s = summary_of(fast, out)
    plans = [p for r in s["trace"] if r["computed"] is not None for p in r["call_plans"]]
    assert any(p["mode"] == "passthrough" for p in plans)  # the range really ran
    assert any(p["reason"] == "stale cache" for p in plans)
    assert probe.check_reuse(s["trace"]) > 0

    plain_fast = patched(wan)
    plain_error = _relative_error(sample(plain_fast, steps=steps), sample(wan, steps=steps))
    assert summary_of(plain_fast)["reused_steps"] > 0
    assert _relative_error(out, vanilla_slg) <= 2 * plain_error


# -- model patches between blocks ----------------------------------------------------------------
def _tiny_wan21_taehv():
    """A random-initialised Wan 2.1 light TAE, loaded as "Load VAE" loads one (Qwen-Image's VAE
    family: 16 latent channels, 8x spatial compression)."""
    tae = comfy.taesd.taehv.TAEHV(latent_channels=16)
    return comfy.sd.VAE(sd=random_state_dict(tae, seed=11))


def _diffsynth_model_patch(dim: int, layers: int):
    control = QwenImageBlockWiseControlNet(num_layers=layers, in_dim=64, dim=dim,
                                           operations=comfy.ops.disable_weight_init)
    control.load_state_dict(random_state_dict(control, seed=12))
    return comfy.model_patcher.ModelPatcher(
        control, load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device())


def test_qwen_image_diffsynth_model_patch_forces_compute():
    qwen = from_config(QWEN_CONFIG)
    n_blocks = len(qwen.model.diffusion_model.transformer_blocks)
    model_patch = _diffsynth_model_patch(dim=64, layers=n_blocks)
    image = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(13))
    with torch.inference_mode():  # as ComfyUI runs nodes
        (controlled,) = QwenImageDiffsynthControlnet().diffsynth_controlnet(
            qwen, model_patch, _tiny_wan21_taehv(), image, strength=1.0)
    lat = torch.zeros(1, 16, 1, 16, 16)
    g = torch.Generator().manual_seed(1)
    positive = [[torch.randn(1, 8, 32, generator=g), {}]]
    negative = [[torch.randn(1, 8, 32, generator=g) * 0.5, {}]]

    def run(m):
        return sample(m, steps=10, cfg=2.0, lat=lat, positive=positive, negative=negative)

    vanilla = run(controlled)
    assert not torch.equal(vanilla, run(qwen))  # the patch does something
    assert torch.equal(run(patched(controlled, NEVER_REUSE)), vanilla)

    fast = patched(controlled)
    control_calls = []
    # the patch as the clone holds it (ModelPatcher.clone deep-copies model options)
    (patch,) = fast.model_options["transformer_options"]["patches"]["double_block"]
    hooks = [b.register_forward_pre_hook(lambda *a: control_calls.append(1))
             for b in patch.model_patch.model.controlnet_blocks]
    counter = BlockCounter(qwen.model.diffusion_model, ("transformer_blocks",))
    try:
        assert torch.equal(run(fast), vanilla)  # nothing reused: every call carries the patch
    finally:
        counter.close()
        for h in hooks:
            h.remove()
    s = summary_of(fast)
    assert len(control_calls) == counter.calls  # the patch ran only where the blocks ran
    assert s["reused_steps"] == 0 and s["computed_steps"] == 10
    reasons = {p["reason"] for r in s["trace"] for p in r["call_plans"]}
    assert "model patches between blocks" in reasons
    assert any("model patches between blocks" in w for w in s["warnings"])


def test_a_per_block_patch_list_on_wan_forces_compute(wan):
    """Newer WanModel runs transformer_options["patches"]["double_block"] after every block,
    replaced or not; any non-empty patch list other than post_input forces compute. (0.3.75's
    WanModel does not run the list, so the output stays the vanilla one.)"""
    def per_block_patch(kwargs):
        return kwargs

    with_patch = wan.clone()
    with_patch.set_model_double_block_patch(per_block_patch)
    fast = patched(with_patch)
    assert torch.equal(sample(fast, steps=10), sample(wan, steps=10))
    s = summary_of(fast)
    assert s["reused_steps"] == 0
    assert set(s["call_reasons"]) <= {"compute: warm-up", "compute: final",
                                      "compute: model patches between blocks"}
    assert any("double_block" in w for w in s["warnings"])


def test_a_post_input_patch_runs_before_the_stack_and_caching_goes_on():
    """Flux's post_input patches (USO style reference) change the stack input only: a reused
    residual is added on top of their output, so they do not force compute."""
    flux = from_config(FLUX_CONFIG)

    def scale_text(kwargs):
        return {**kwargs, "txt": kwargs["txt"] * 1.5}

    styled = flux.clone()
    styled.set_model_post_input_patch(scale_text)
    g = torch.Generator().manual_seed(1)
    positive, negative = (
        [[torch.randn(1, 8, 32, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)}]]
        for _ in range(2)
    )

    def run(m):
        return sample(m, steps=10, cfg=2.0, lat=torch.zeros(1, 16, 16, 16), positive=positive,
                      negative=negative)

    vanilla = run(styled)
    assert not torch.equal(vanilla, run(flux))  # the patch does something
    assert torch.equal(run(patched(styled, NEVER_REUSE)), vanilla)
    fast = patched(styled)
    assert torch.isfinite(run(fast)).all()
    s = summary_of(fast)
    assert s["reused_steps"] > 0
    assert not any("model patches" in reason for reason in s["call_reasons"])


# -- offload_cache -------------------------------------------------------------------------------
def test_offload_moves_only_the_stored_residual(wan, monkeypatch):
    """On this CPU-only host the offload device is the CPU too; ComfyUI's offload device is
    pointed at 'meta' (a real torch device that stores no data) so the placement shows. With a
    never-reusing codebook nothing stored is ever read back, so the output is unchanged."""
    meta = torch.device("meta")
    monkeypatch.setattr(comfy.model_management, "unet_offload_device", lambda: meta)
    model = patched(wan, NEVER_REUSE, offload_cache=True)
    handle = handle_of(model)
    residual_devices, metric_devices = set(), set()

    def record(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        for stream in handle.run.streams.values():
            residual_devices.update(t.device for t in (stream.residual or {}).values())
            metric_devices.update(t.device for t in stream.metric.values())
        return out

    model.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "test", record)
    assert torch.equal(sample(model), sample(wan))
    assert residual_devices == {meta}
    assert metric_devices == {torch.device("cpu")}  # the compute device
    assert summary_of(model)["distance_range"] is not None  # distances computed on it


# -- MoReg ---------------------------------------------------------------------------------------
def test_moreg_window_matches_the_reference():
    settings = MoRegSettings()
    # reference (counts steps from 1): 4..26 of 30 and 10..90 of 100; here 0-based, end excluded
    assert settings.window_steps(30) == (3, 26)
    assert settings.window_steps(100) == (9, 90)


def test_moreg_window_is_relative_to_the_whole_schedule(wan):
    """KSamplerAdvanced steps 10..20 of 20: MoReg acts on whole-schedule steps 3..15 only."""
    model = patched(wan, NEVER_REUSE, moreg=MoRegSettings())
    sample(model, steps=20, start_step=10, last_step=20)
    s = summary_of(model)
    start, end = MoRegSettings().window_steps(20)
    measured = [r for r in s["trace"] if r["distance"] is not None]
    assert len(measured) == 9
    for r in measured:
        inside = start <= r["step"] + 10 < end
        assert (r["moreg_factor"] != 1.0) == inside, r


def test_moreg_says_when_the_video_has_no_motion_to_measure(wan):
    one_frame = patched(wan, moreg=MoRegSettings())
    sample(one_frame, lat=latent(frames=1))
    assert any("one latent frame" in w for w in summary_of(one_frame)["warnings"])
    long_stride = patched(wan, moreg=MoRegSettings(strides=(8,)))
    sample(long_stride, lat=latent(frames=5))
    assert any("stride" in w for w in summary_of(long_stride)["warnings"])


# -- per-run state -------------------------------------------------------------------------------
def test_two_threads_sampling_one_patched_model_keep_their_own_runs(wan):
    """ComfyUI's model loading and clean-up are not thread-safe (one ``current_patcher`` per
    loaded model, object patches applied and removed on the shared modules), so the two
    samplers enter their loops together (both loaded) and finish them together (before either
    cleans up); in between, their model calls interleave freely. (A failure 1 run in ~15 was
    the test's own: both threads drew their noise from torch's global generator.)"""
    fast = patched(wan)
    # noise drawn here: comfy.sample.prepare_noise seeds torch's global generator, which two
    # threads drawing at once would share
    jobs = {name: dict(lat=lat, seed=seed, noise=comfy.sample.prepare_noise(lat, seed))
            for name, lat, seed in (("a", latent(), 1), ("b", latent(frames=3), 2))}
    expected = {k: sample(fast, **kw) for k, kw in jobs.items()}
    expected_patterns = summary_of(fast)["pattern"]

    def slow_down(executor, *args, **kwargs):  # interleave the two samplers' model calls
        time.sleep(0.005)
        return executor(*args, **kwargs)

    together = threading.Barrier(len(jobs), timeout=120)

    def loops_together(executor, *args, **kwargs):
        together.wait()  # both samplers have loaded the model
        out = executor(*args, **kwargs)
        together.wait()
        return out

    fast.add_wrapper_with_key(WrappersMP.APPLY_MODEL, "interleave", slow_down)
    fast.add_wrapper_with_key(WrappersMP.SAMPLER_SAMPLE, "together", loops_together)
    results, errors = {}, []

    def work(name):
        try:
            results[name] = sample(fast, **jobs[name])
        except Exception as e:  # reported below, with the other thread's outcome
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in jobs:
        assert torch.equal(results[name], expected[name]), name
    assert summary_of(fast)["pattern"] == expected_patterns
