"""Tier 2: AdaCache on tiny real Wan models, through ComfyUI's own loader and samplers."""

from __future__ import annotations

import comfy.model_management
import comfy.patcher_extension
import pytest
import torch
from comfy.ldm.wan.model import sinusoidal_embedding_1d
from comfyui_adacache.adacache import AdaCacheConfig, Codebook, MoRegSettings
from comfyui_adacache.nodes.patch import apply_adacache
from wan_fixtures import BlockCounter, conds, handle_of, latent, load_wan, sample, summary_of

NEVER_REUSE = Codebook((1.0,), (1,))
ALWAYS_REUSE = Codebook((1.0,), (4,))  # every distance -> next compute 4 steps later


def patched(model, **kw):
    kw.setdefault("preset", "fast")
    return apply_adacache(model, AdaCacheConfig(**kw))


@pytest.fixture(scope="module")
def wan():
    return load_wan("t2v")


# -- parity ----------------------------------------------------------------------------------
def test_never_reusing_codebook_is_bit_identical_to_vanilla(wan):
    vanilla = sample(wan)
    cached = patched(wan, preset="custom", codebook=NEVER_REUSE)
    assert torch.equal(sample(cached), vanilla)
    assert summary_of(cached)["reused_steps"] == 0


def test_the_original_model_is_untouched_and_runs_repeat_exactly(wan):
    vanilla = sample(wan)
    fast = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    first, second = sample(fast), sample(fast)
    assert torch.equal(first, second)  # no state leaks between queued runs
    assert not torch.equal(first, vanilla)  # caching did something ...
    assert torch.equal(sample(wan), vanilla)  # ... to the clone only
    assert "adacache_handle" not in wan.model_options.get("transformer_options", {})


# -- schedule on the model -------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["fast", "medium", "slow"])
def test_block_stack_runs_equal_computed_steps(wan, preset):
    model = patched(wan, preset="custom", codebook=ALWAYS_REUSE) if preset == "fast" else \
        patched(wan, preset=preset)
    counter = BlockCounter(wan.model.diffusion_model)
    try:
        sample(model, steps=20)
    finally:
        counter.close()
    s = summary_of(model)
    assert counter.stack_runs == s["computed_steps"] == s["stack_runs"]  # one call per step
    assert s["pattern"].startswith("CC") and s["pattern"].endswith("CC")
    if preset == "fast":  # next compute = this + 4 everywhere between the forced ends
        assert s["pattern"] == "CC...C...C...C...CCC"


def test_cached_step_is_embeddings_plus_stored_residual_then_head(wan):
    model = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    handle = handle_of(model)
    seen = []

    def record(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kw):
        run = handle.run
        stored = {k.cond: s.residual["img"].clone() for k, s in run.streams.items() if s.residual}
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        if run.schedule.trace[run.schedule.current].computed is False:
            seen.append((x.clone(), t.clone(), c_crossattn, list(transformer_options["uuids"]),
                         stored, out.clone()))
        return out

    # registered after AdaCache's wrapper, so it runs inside it (the run's call has begun)
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test", record)
    sample(model, steps=10)
    assert seen, "no cached step was recorded"
    x, sigma, context, uuids, stored, out = seen[0]
    base, dm = model.model, model.model.diffusion_model
    with torch.no_grad():
        xc = base.model_sampling.calculate_input(sigma, x)
        t = base.model_sampling.timestep(sigma).float()
        embedded = dm.patch_embedding(xc)
        tokens = embedded.flatten(2).transpose(1, 2)
        e = dm.time_embedding(sinusoidal_embedding_1d(dm.freq_dim, t.flatten()))
        e = e.reshape(t.shape[0], -1, e.shape[-1])
        hidden = tokens + torch.cat([stored[u] for u in uuids])
        velocity = dm.unpatchify(dm.head(hidden, e), embedded.shape[2:])
        manual = base.model_sampling.calculate_denoised(sigma, velocity.float(), x)
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-5)


# -- call patterns ---------------------------------------------------------------------------
def test_cfg_batched_and_split_share_one_residual_per_stream(wan, monkeypatch):
    batched = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    out_batched = sample(batched)
    s_batched = summary_of(batched, out_batched)
    split = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *a, **k: 0)
    counter = BlockCounter(wan.model.diffusion_model)
    try:
        out_split = sample(split)  # memory "short": ComfyUI calls cond and uncond separately
    finally:
        counter.close()
    s_split = summary_of(split, out_split)
    assert s_split["pattern"] == s_batched["pattern"]
    assert s_split["streams"] == s_batched["streams"] == 2
    assert s_split["stack_runs"] == 2 * s_split["computed_steps"] == counter.stack_runs
    torch.testing.assert_close(out_split, out_batched, rtol=1e-4, atol=1e-4)


def test_cfg_split_by_different_context_lengths(wan):
    positive, negative = conds(pos_len=12, neg_len=7)
    vanilla = sample(wan, positive=positive, negative=negative)
    never = patched(wan, preset="custom", codebook=NEVER_REUSE)
    assert torch.equal(sample(never, positive=positive, negative=negative), vanilla)
    fast = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    out = sample(fast, positive=positive, negative=negative)
    s = summary_of(fast, out)
    assert s["streams"] == 2 and s["stack_runs"] == 2 * s["computed_steps"]
    assert s["reused_calls"] == 2 * s["reused_steps"] > 0
    assert torch.isfinite(out).all()


def test_cfg_one_and_batch_two(wan):
    fast = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    out = sample(fast, cfg=1.0)
    assert summary_of(fast, out)["streams"] == 1 and torch.isfinite(out).all()
    lat = latent(batch=2)
    never = patched(wan, preset="custom", codebook=NEVER_REUSE)
    assert torch.equal(sample(never, lat=lat), sample(wan, lat=lat))
    out2 = sample(fast, lat=lat)
    assert out2.shape == lat.shape and summary_of(fast, out2)["reused_steps"] > 0


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "dpmpp_2s_ancestral", "uni_pc"])
def test_samplers(wan, sampler):
    vanilla = sample(wan, sampler=sampler, steps=10)
    never = patched(wan, preset="custom", codebook=NEVER_REUSE)
    assert torch.equal(sample(never, sampler=sampler, steps=10), vanilla)
    fast = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    counter = BlockCounter(wan.model.diffusion_model)
    try:
        out = sample(fast, sampler=sampler, steps=10)
    finally:
        counter.close()
    s = summary_of(fast)
    assert s["steps_reached"] == 10
    assert s["pattern"] == "CC...C..CC"
    assert counter.stack_runs == s["stack_runs"]
    calls_in_computed = sum(r["calls"] for r in s["trace"] if r["computed"])
    assert s["stack_runs"] == calls_in_computed  # every evaluation of a compute step is full
    assert torch.isfinite(out).all() and out.shape == vanilla.shape


def test_ksampler_advanced_two_expert_chain():
    """Wan 2.2 style: a high-noise expert for steps 0-8, a low-noise expert for 8-16."""
    high, low = load_wan("t2v", seed=1), load_wan("t2v", seed=2)
    lat = latent()

    def chain(h, lo):
        first = sample(h, steps=16, start_step=0, last_step=8, lat=lat)
        return sample(lo, steps=16, start_step=8, last_step=16, lat=first, add_noise=False)

    vanilla = chain(high, low)
    never = chain(patched(high, preset="custom", codebook=NEVER_REUSE),
                  patched(low, preset="custom", codebook=NEVER_REUSE))
    assert torch.equal(never, vanilla)
    h, lo = patched(high, preset="fast"), patched(low, preset="fast")
    out = chain(h, lo)
    for s in (summary_of(h), summary_of(lo)):
        assert s["steps"] == 8 and s["steps_reached"] == 8
        assert s["codebook_steps"] == pytest.approx(16, rel=0.05)  # density of the full schedule
        assert s["pattern"][:2] == "CC" and s["pattern"][-2:] == "CC"
    assert torch.isfinite(out).all()


def test_resolution_change_between_runs_never_reuses_a_stale_cache(wan):
    fast = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    sample(fast, lat=latent(size=16))
    big = sample(fast, lat=latent(size=24, frames=3))
    fresh = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    assert torch.equal(big, sample(fresh, lat=latent(size=24, frames=3)))


def test_interrupt_on_a_cached_step_then_clean_rerun(wan):
    model = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    handle = handle_of(model)
    clean = sample(patched(wan, preset="custom", codebook=ALWAYS_REUSE))
    calls = []

    def interrupt_on_cached_step(executor, *args, **kwargs):
        run = handle.run
        if run.schedule.trace[run.schedule.current].computed is False and not calls:
            calls.append(run.schedule.current)
            comfy.model_management.interrupt_current_processing(True)
        return executor(*args, **kwargs)

    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test",
                               interrupt_on_cached_step)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            sample(model)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert calls == [2] and handle.run is None
    model.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test")
    assert torch.equal(sample(model), clean)


def test_two_samplers_sharing_one_patched_model(wan):
    fast = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    a = sample(fast, lat=latent(), seed=1)
    b = sample(fast, lat=latent(frames=3), seed=2)
    a2 = sample(fast, lat=latent(), seed=1)
    assert torch.equal(a, a2) and b.shape[2] == 3


# -- Wan variants ----------------------------------------------------------------------------
def test_i2v_with_clip_vision_tokens():
    model = load_wan("i2v")
    lat = latent()
    concat = torch.randn(1, 16, 5, 16, 16, generator=torch.Generator().manual_seed(3))
    clip = torch.randn(1, 257, 1280, generator=torch.Generator().manual_seed(4))
    positive, negative = conds()
    for c in (positive, negative):
        c[0][1]["concat_latent_image"] = concat
        c[0][1]["clip_vision_output"] = type("ClipOut", (), {"penultimate_hidden_states": clip})()
    vanilla = sample(model, lat=lat, positive=positive, negative=negative)
    never = patched(model, preset="custom", codebook=NEVER_REUSE)
    assert torch.equal(sample(never, lat=lat, positive=positive, negative=negative), vanilla)
    fast = patched(model, preset="custom", codebook=ALWAYS_REUSE)
    out = sample(fast, lat=lat, positive=positive, negative=negative)
    assert summary_of(fast, out)["reused_steps"] > 0 and torch.isfinite(out).all()


def test_vace_hints_are_not_added_twice():
    model = load_wan("vace")  # 2 VACE blocks, hints after blocks 0 and 2
    frames = torch.randn(1, 16, 5, 16, 16, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(1, 64, 5, 16, 16)
    positive, negative = conds()
    for c in (positive, negative):
        c[0][1]["vace_frames"] = [torch.cat([frames, frames], dim=1)]
        c[0][1]["vace_mask"] = [mask]
        c[0][1]["vace_strength"] = [1.0]
    vanilla = sample(model, positive=positive, negative=negative)
    never = patched(model, preset="custom", codebook=NEVER_REUSE)
    assert torch.equal(sample(never, positive=positive, negative=negative), vanilla)
    fast = patched(model, preset="custom", codebook=ALWAYS_REUSE)
    dm = model.model.diffusion_model
    vace_calls = []
    hooks = [  # a submodule's hook fires only when the block's real forward runs
        b.after_proj.register_forward_pre_hook(lambda *a: vace_calls.append(1))
        for b in dm.vace_blocks
    ]
    try:
        out = sample(fast, positive=positive, negative=negative)
    finally:
        for h in hooks:
            h.remove()
    s = summary_of(fast)
    assert len(vace_calls) == len(dm.vace_blocks) * s["computed_steps"]
    assert torch.isfinite(out).all()


# -- MoReg on the model ----------------------------------------------------------------------
def test_moreg_runs_on_video_tokens(wan):
    model = patched(wan, preset="fast", moreg=MoRegSettings(window_start=0.0, window_end=1.0))
    sample(model, steps=12)
    trace = summary_of(model)["trace"]
    measured = [r for r in trace if r["distance"] is not None]
    assert measured and all(r["motion"] is not None and r["motion"] > 0 for r in measured)
    assert all(r["moreg_factor"] > 0 for r in measured)


# -- bad input -------------------------------------------------------------------------------
def test_unsupported_model_names_its_class_and_the_supported_families(wan):
    other = wan.clone()
    other.add_object_patch("diffusion_model", torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"'Linear'.*Supported families: Wan \(WanModel"):
        patched(other)


def test_bad_metric_blocks_fail_at_apply_time(wan):
    from comfyui_adacache.adacache import MetricBlocksError

    with pytest.raises(MetricBlocksError, match="outside the stack of 4 blocks"):
        patched(wan, metric_blocks="9")


def test_offloaded_cache_gives_the_same_output(wan):
    """offload_cache keeps residuals on ComfyUI's offload device (CPU memory). On this CPU-only
    host both devices are the CPU, so this checks the path and the placement, not a transfer."""
    plain = patched(wan, preset="custom", codebook=ALWAYS_REUSE)
    offloaded = patched(wan, preset="custom", codebook=ALWAYS_REUSE, offload_cache=True)
    handle = handle_of(offloaded)
    devices = []

    def record(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        devices.extend(t.device for s in handle.run.streams.values() for t in s.residual.values())
        return out

    offloaded.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test", record)
    assert torch.equal(sample(offloaded), sample(plain))
    offload_device = comfy.model_management.unet_offload_device()
    assert devices and all(d == offload_device for d in devices)
    assert summary_of(offloaded)["reused_steps"] == summary_of(plain)["reused_steps"] > 0
