"""AdaCache Apply (Raylight) end to end through Raylight's real RayWorker actors (2 CPU processes
over gloo, tests/raylight_harness.py): Ulysses, CFG parallel and an odd token count (padding)
each reproduce the single-process run - the same computed steps, distances within 1e-3, and an
output as close to one process's as Raylight without AdaCache gets (2x that difference,
measured here). A rank alone wanting to compute makes every rank compute (no hang).

The end-to-end tests need a Raylight checkout named by ADACACHE_RAYLIGHT, ray, and a ComfyUI
0.33 host (ADACACHE_COMFYUI); they skip otherwise, saying why. The bad-input tests run anywhere.
"""

from __future__ import annotations

import time

import comfy_host
import pytest
import raylight_harness
import torch
from comfyui_adacache.adacache import Codebook, MoRegSettings
from comfyui_adacache.adacache.shard import COMPUTES_ELSEWHERE
from comfyui_adacache.nodes import raylight as node
from comfyui_adacache.nodes.calibration_nodes import RUNS_ALL, RUNS_ALL_THEN_FORGET, RUNS_LATEST

SKIP = raylight_harness.skip_reason(comfy_host.VERSION)
needs_raylight = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))
EVEN = {"frames": 4, "size": 8}  # 64 tokens: 32 on each rank
ODD = {"frames": 3, "size": 10}  # 75 tokens: rank 1 holds one pad token
CODEBOOK = Codebook((0.05, 1.0), (3, 1))  # distances here are 0.01-0.035: rate 3 mostly
MOREG = MoRegSettings(norm_a=0.06, norm_p=1.0)  # motion ~0.06: factor near 1, residuals gathered
AUTO = "auto fastest (5x)"
NEVER_REUSE, ALWAYS_REUSE = Codebook((1.0,), (1,)), Codebook((1.0,), (4,))
SETTINGS = dict(metric="l1", metric_blocks="middle", start_percent=0.0, end_percent=1.0,
                verbose=False)


def apply_node(actors, preset="custom", codebook=CODEBOOK, moreg=MOREG):
    return node.AdaCacheApplyRaylight.execute(actors, preset, codebook=codebook, moreg=moreg,
                                              **SETTINGS)


def run(actors, lat: dict) -> dict:
    """Raylight's sampler on the workers: rank 0's latent and every rank's AdaCache summary."""
    from wan_fixtures import latent

    out = raylight_harness.sample(actors, latent(**lat))
    summaries = [node.worker_summary(w, {"samples": out})[0] for w in actors["workers"]]
    return {"out": out, "summaries": summaries}


def single_run(config, lat: dict) -> dict:
    """One process, Raylight's sampler arguments (comfy.sample.sample, start 0, end 10000)."""
    from comfyui_adacache.nodes.adacache_nodes import patch_model
    from wan_fixtures import latent, load_wan, sample, summary_of

    model = load_wan("t2v", layers=2, heads=2)
    model = model if config is None else patch_model(model, config)
    out = sample(model, steps=8, lat=latent(**lat), start_step=0, last_step=10000,
                 force_full_denoise=True)
    return {"out": out, "summary": None if config is None else summary_of(model)}


@pytest.fixture(scope="module")
def single():
    from comfyui_adacache.adacache import AdaCacheConfig

    adacache = AdaCacheConfig(preset="custom", codebook=CODEBOOK, moreg=MOREG)
    calibrate = AdaCacheConfig(preset="calibrate")
    return {(name, size): single_run(config, lat)
            for name, config in (("vanilla", None), ("adacache", adacache),
                                 ("calibrate", calibrate))
            for size, lat in (("even", EVEN), ("odd", ODD))}


@pytest.fixture(scope="module")
def single_auto():
    """An auto preset's first run (it calibrates) and second (it plans), in one process."""
    from comfyui_adacache.adacache import AdaCacheConfig
    from comfyui_adacache.nodes.adacache_nodes import patch_model
    from comfyui_adacache.nodes.calibration_store import STORE
    from comfyui_adacache.nodes.run_setup import store_key
    from wan_fixtures import latent, load_wan, sample, summary_of

    model = patch_model(load_wan("t2v", layers=2, heads=2), AdaCacheConfig(preset=AUTO))
    STORE.clear(store_key(model))  # a fresh start, as in the workers
    runs = []
    for _ in range(2):
        sample(model, steps=8, lat=latent(**EVEN), start_step=0, last_step=10000,
               force_full_denoise=True)
        runs.append(summary_of(model))
    return runs


@pytest.fixture(scope="module")
def ray_cluster():
    import folder_paths
    from wan_fixtures import wan_checkpoint

    path = wan_checkpoint("t2v", layers=2, heads=2)
    folder_paths.add_model_folder_path("diffusion_models", str(path.parent))
    raylight_harness.start_ray()
    try:
        yield path.name
    finally:
        raylight_harness.stop_ray()


def topology(unet: str, ulysses: int, cfg: int, steps) -> dict:
    """Fresh workers with these degrees, ``steps`` run on them in order, the workers killed;
    all under the harness's timeout (a hang fails, it never blocks)."""
    def go():
        actors = raylight_harness.load_workers(ulysses, cfg, unet)
        try:
            return {name: step(actors) for name, step in steps}
        finally:
            raylight_harness.kill(actors)

    return raylight_harness.with_timeout(go)


def disagree(actors) -> dict:
    """Rank 0 would reuse every step it may, rank 1 alone wants to compute every step."""
    import ray

    configs = [apply_config(ALWAYS_REUSE), apply_config(NEVER_REUSE)]
    ray.get([node.send_config(w, c) for w, c in zip(actors["workers"], configs, strict=True)])
    return run(actors, EVEN)


def live(actors) -> dict:
    """The Apply's settings sent with a live relay: a run, and what the relay forwarded."""
    events = []
    relay = node.LiveRelay("41", "live prompt", "live client",
                           forward=lambda *event: events.append(event))
    try:
        node.send_all(actors["workers"], apply_config(CODEBOOK), "41", relay)
        result = run(actors, EVEN)
        deadline = time.monotonic() + 30
        while not any(e[0] == "adacache.trace" for e in events) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        relay.stop(timeout=10)
    return {**result, "events": events, "relay running": relay.thread.is_alive()}


def apply_config(codebook):
    from comfyui_adacache.adacache import AdaCacheConfig

    return AdaCacheConfig(preset="custom", codebook=codebook, moreg=MOREG)


def fit(actors, runs: str):
    """AdaCache Calibrate (Raylight) on the runs rank 0 recorded: its output, or the error."""
    try:
        return node.AdaCacheCalibrateRaylight.execute(actors, {"samples": torch.zeros(1)}, 3.0,
                                                      False, "", runs)
    except ValueError as e:
        return e


@pytest.fixture(scope="module")
def single_fit():
    """AdaCache Calibrate in one process on a calibration run of the odd latent."""
    from comfyui_adacache.adacache import AdaCacheConfig
    from comfyui_adacache.nodes.adacache_nodes import patch_model
    from comfyui_adacache.nodes.calibration_nodes import AdaCacheCalibrate
    from wan_fixtures import latent, load_wan, sample

    model = patch_model(load_wan("t2v", layers=2, heads=2), AdaCacheConfig(preset="calibrate"))
    out = sample(model, steps=8, lat=latent(**ODD), start_step=0, last_step=10000,
                 force_full_denoise=True)
    return AdaCacheCalibrate.execute(model, {"samples": out}, 3.0, False, "", RUNS_LATEST)


def report(actors, lat: dict):
    """AdaCache Report (Raylight) on rank 0's run of ``lat`` (sampled again: same output)."""
    out = run(actors, lat)["out"]
    return node.AdaCacheReportRaylight.execute(actors, {"samples": out}).result


@pytest.fixture(scope="module")
def ulysses(ray_cluster):
    return topology(ray_cluster, ulysses=2, cfg=1, steps=[
        ("vanilla even", lambda a: run(a, EVEN)),
        ("vanilla odd", lambda a: run(a, ODD)),
        ("apply", apply_node),
        ("adacache even", lambda a: run(a, EVEN)),
        ("adacache odd", lambda a: run(a, ODD)),
        ("report", lambda a: report(a, EVEN)),
        ("calibrate", lambda a: apply_node(a, preset="calibrate", codebook=None, moreg=None)),
        ("calibrate odd", lambda a: run(a, ODD)),
        ("fit", lambda a: fit(a, RUNS_LATEST)),
        ("fit and forget", lambda a: fit(a, RUNS_ALL_THEN_FORGET)),
        ("fit after forgetting", lambda a: fit(a, RUNS_ALL)),
        ("auto", lambda a: apply_node(a, preset=AUTO, codebook=None, moreg=None)),
        ("auto first", lambda a: run(a, EVEN)),
        ("auto second", lambda a: run(a, EVEN)),
        ("disagree", disagree),
        ("live", live),
    ])


@pytest.fixture(scope="module")
def cfg_split(ray_cluster):
    return topology(ray_cluster, ulysses=1, cfg=2, steps=[
        ("vanilla even", lambda a: run(a, EVEN)),
        ("apply", apply_node),
        ("adacache even", lambda a: run(a, EVEN)),
    ])


def assert_reproduces(runs: dict, single: dict, size: str) -> None:
    """Every rank ran the single-process schedule and distances; the output is within twice
    the engine's own difference (Raylight without AdaCache vs one process)."""
    ref = single[("adacache", size)]
    pattern = ref["summary"]["pattern"]
    assert "." in pattern, "the comparison needs reused steps"
    mine = runs[f"adacache {size}"]
    for summary in mine["summaries"]:
        assert summary["pattern"] == pattern
        for record, theirs in zip(summary["trace"], ref["summary"]["trace"], strict=True):
            for key in ("distance", "motion"):
                if theirs[key] is None:
                    assert record[key] is None
                else:
                    assert record[key] == pytest.approx(theirs[key], abs=1e-3)
    engine = (runs[f"vanilla {size}"]["out"] - single[("vanilla", size)]["out"]).abs().max()
    diff = (mine["out"] - ref["out"]).abs().max().item()
    worst = max(abs(r["distance"] - t["distance"]) for r, t in zip(
        mine["summaries"][0]["trace"], ref["summary"]["trace"], strict=True)
        if t["distance"] is not None)
    print(f"{size}: schedule {pattern}, largest distance difference {worst:.1e}, output "
          f"difference {diff:.2e} (Raylight without AdaCache: {engine.item():.2e})")
    assert diff <= 2 * max(engine.item(), 1e-6), (diff, engine.item())


@needs_raylight
def test_ulysses_reproduces_the_single_process_run(ulysses, single):
    assert_reproduces(ulysses, single, "even")


@needs_raylight
def test_odd_token_count_with_padding_reproduces_it(ulysses, single):
    assert_reproduces(ulysses, single, "odd")


@needs_raylight
def test_cfg_parallel_reproduces_it(cfg_split, single):
    assert_reproduces(cfg_split, single, "even")


@needs_raylight
def test_one_rank_alone_wanting_to_compute_makes_every_rank_compute(ulysses):
    summaries = ulysses["disagree"]["summaries"]  # it finished: no hang
    for summary in summaries:
        assert set(summary["pattern"]) == {"C"}
    assert any(COMPUTES_ELSEWHERE in reason for reason in summaries[0]["call_reasons"])
    assert torch.allclose(ulysses["disagree"]["out"], ulysses["vanilla even"]["out"], atol=1e-6)


@needs_raylight
def test_calibration_on_raylight_records_the_single_process_sample(ulysses, single):
    expected = single[("calibrate", "odd")]["summary"]["calibration_sample"]
    for summary in ulysses["calibrate odd"]["summaries"]:
        sample = summary["calibration_sample"]
        assert sample["distances"] == pytest.approx(expected["distances"], abs=1e-3)
        assert sample["motions"] == pytest.approx(expected["motions"], abs=1e-3)


@needs_raylight
def test_calibrate_on_raylight_fits_the_single_process_plan(ulysses, single_fit):
    fitted = ulysses["fit"]
    assert "AdaCache Calibrate (Raylight): 1 run(s) of 8 steps" in fitted.result[2]
    mine, theirs = fitted.ui["adacache_calibration"][0], single_fit.ui["adacache_calibration"][0]
    assert mine["predicted_computed"] == theirs["predicted_computed"]
    profile, expected = fitted.result[0].profile, single_fit.result[0].profile
    assert [g for row in profile for g in row] == pytest.approx(
        [g for row in expected for g in row], abs=1e-3)
    print(f"Calibrate (Raylight): computes {mine['predicted_computed']}, as in one process")
    assert not isinstance(ulysses["fit and forget"], Exception)  # fitted, then forgotten
    assert "no calibration run recorded yet for the Raylight workers' model" in str(
        ulysses["fit after forgetting"])


@needs_raylight
def test_an_auto_preset_calibrates_then_plans_as_on_one_gpu(ulysses, single_auto):
    first, second = single_auto
    assert set(first["pattern"]) == {"C"} and "." in second["pattern"]
    print(f"auto: first run {first['pattern']}, second {second['pattern']}")
    for name, expected in (("auto first", first), ("auto second", second)):
        for summary in ulysses[name]["summaries"]:
            assert summary["pattern"] == expected["pattern"]


@needs_raylight
def test_the_report_reads_rank_0s_run_in_the_main_process(ulysses, single):
    image, text = ulysses["report"][:2]
    assert image.shape[-1] == 3 and single[("adacache", "even")]["summary"]["pattern"] in text


@needs_raylight
def test_the_live_relay_forwards_rank_0s_progress_and_trace(ulysses):
    result = ulysses["live"]
    events, summary = result["events"], result["summaries"][0]
    assert not result["relay running"]
    assert {client for *_, client in events} == {"live client"}
    progress = [data for event, data, _ in events if event == "adacache.progress"]
    traces = [data for event, data, _ in events if event == "adacache.trace"]
    assert len(traces) == 1  # rank 0's alone
    assert traces[0]["pattern"] == summary["pattern"] and "." in summary["pattern"]
    assert all(d["node"] == "41" and d["prompt_id"] == "live prompt" for d in progress + traces)
    assert progress and all(d["run"] == traces[0]["run"] for d in progress)
    sent = sorted({r["step"] for d in progress for r in [d["record"], *d["earlier"]]})
    assert sent == list(range(len(summary["pattern"])))  # every step, as it finished
    print(f"live relay: {len(progress)} progress events, trace {traces[0]['pattern']}")


# -- bad input (no Raylight needed) ------------------------------------------------------------
@pytest.mark.parametrize("value", ["ray_actors", None, {"workers": []}, {"workers": [1, 2]}])
def test_anything_but_raylight_actors_is_refused_naming_the_input(value):
    with pytest.raises(ValueError, match="AdaCache Apply \\(Raylight\\): 'ray_actors' got"):
        apply_node(value)


def test_the_raylight_report_refuses_anything_but_actors_naming_the_input():
    with pytest.raises(ValueError, match="AdaCache Report \\(Raylight\\): 'ray_actors' got"):
        node.AdaCacheReportRaylight.execute({"samples": torch.zeros(1)}, {"samples": None})


@pytest.mark.parametrize("parallel, words", [
    ({"is_xdit": True, "pipefusion_enabled": True}, "PipeFusion"),
    ({"is_xdit": True, "dp_degree": 2}, "data parallel"),
    ({"is_xdit": False, "dp_degree": 1}, "data parallel"),
])
def test_pipefusion_and_data_parallel_are_refused(parallel, words):
    with pytest.raises(ValueError, match=f"'ray_actors' run {words}"):
        node.check_parallel(parallel)


def test_a_worker_without_the_pack_on_its_machine_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="AdaCache is not at .* on this Ray worker's machine"):
        node._import_pack("adacache_elsewhere", str(tmp_path), "nodes.xdit")


def test_forwarding_without_a_prompt_server_never_raises():
    node.forward_to_browser("adacache.trace", {"node": "1"}, "client")
    assert node.LiveRelay.for_browser("1") is None  # no browser: no relay, no queue actor
