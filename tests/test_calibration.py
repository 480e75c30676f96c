"""Calibration, saved codebooks, the report node and input validation, in the real host.

The nodes run through ComfyUI's own V3 machinery (``PREPARE_CLASS_CLONE`` sets the hidden
unique id as the executor does) and sample the shipped demo model with ComfyUI's sampler
(``comfy.sample.sample``, 30 steps euler/simple, as scripts/demo.py).
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch
from comfyui_adacache.adacache import (
    CalibratedPlan,
    CalibrationSample,
    Codebook,
    codebook_or_plan,
    format_summary,
)
from test_plan import OLD_PLAN_FILE
from wan_fixtures import handle_of, summary_of

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "diffusion_models" / "adacache_demo_wan.safetensors"
STEPS = 30
LATENT = {"samples": torch.zeros(1, 16, 1, 8, 8)}  # a sampler's output, for argument checks
APPLY_DEFAULTS = dict(metric="l1", metric_blocks="middle", start_percent=0.0, end_percent=1.0,
                      verbose=False, offload_cache=False)


@pytest.fixture(scope="module")
def pack():
    from comfyui_adacache.nodes import (
        adacache_nodes,
        calibration_nodes,
        demo_latent,
        demo_nodes,
        report,
    )

    return adacache_nodes, calibration_nodes, report, demo_nodes, demo_latent


@pytest.fixture(scope="module")
def model():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(MODEL))


@pytest.fixture()
def user_dir(tmp_path):
    import folder_paths

    previous = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(tmp_path / "user"))
    yield tmp_path / "user"
    folder_paths.set_user_directory(previous)


def node(cls, unique_id=None):
    """The node class as ComfyUI's executor runs it (hidden inputs set on a clone)."""
    hidden = {"UNIQUE_ID": unique_id}
    if "v3_data" in inspect.signature(cls.PREPARE_CLASS_CLONE).parameters:  # newer hosts
        return cls.PREPARE_CLASS_CLONE({"hidden_inputs": hidden})
    return cls.PREPARE_CLASS_CLONE(hidden)


def apply(pack, model, unique_id, preset, codebook=None, moreg=None, **overrides):
    nodes = pack[0]
    kwargs = {**APPLY_DEFAULTS, **overrides}
    out = node(nodes.AdaCacheApply, unique_id).execute(
        model, preset, codebook=codebook, moreg=moreg, **kwargs
    )
    return out.args[0]


def sample(pack, patched, scene: str, seed: int, steps: int = STEPS, callback=None, batch=1):
    import comfy.sample

    demo_nodes, demo_latent = pack[3], pack[4]
    pos, neg = demo_nodes.AdaCacheDemoScene.execute(scene).args
    lat = torch.zeros(batch, 16, demo_latent.FRAMES, demo_latent.LATENT_HW, demo_latent.LATENT_HW)
    noise = comfy.sample.prepare_noise(lat, seed)
    out = comfy.sample.sample(patched, noise, steps, 3.0, "euler", "simple", pos, neg, lat,
                              seed=seed, callback=callback)
    handle = handle_of(patched)
    return {"samples": out}, handle.last_summary


# --- preset calibrate, AdaCache Calibrate, saved codebooks ------------------------------------


def test_calibrate_preset_computes_and_records_every_step(pack, model):
    calibration = pack[1]
    calibration.STORE.clear(calibration.store_key(model))
    patched = apply(pack, model, "cal-1", "calibrate")
    _, summary = sample(pack, patched, "fast motion", 0)
    assert summary["calibration"] and summary["preset"] == "calibrate"
    assert summary["computed_steps"] == STEPS and "." not in summary["pattern"]
    assert not any("no step was reused" in w for w in summary["warnings"])
    trace = summary["trace"]
    assert trace[0]["distance"] is None
    assert all(r["distance"] is not None and r["distance"] > 0 for r in trace[1:])
    # raw motion is recorded even with MoReg off (a video family)
    assert all(r["motion"] is not None for r in trace[1:]) and not summary["moreg"]
    runs = calibration.STORE.runs(calibration.store_key(model))
    assert len(runs) == 1
    sample_ = runs[0].sample
    assert sample_.n_steps == STEPS
    assert list(sample_.distances) == [r["distance"] for r in trace]
    assert list(sample_.motions) == [r["motion"] for r in trace]
    # a fast preset on the same Apply node id records nothing
    _, summary = sample(pack, apply(pack, model, "cal-1", "fast"), "static", 0)
    assert summary["computed_steps"] < STEPS
    assert len(calibration.STORE.runs(calibration.store_key(model))) == 1


def test_calibrate_node_saves_a_codebook_the_editor_loads_by_name(pack, model, user_dir):
    from comfyui_adacache.nodes import saved_codebooks

    nodes, calibration = pack[0], pack[1]
    calibration.STORE.clear(calibration.store_key(model))
    patched = apply(pack, model, "cal-2", "calibrate")
    for scene in ("static", "fast motion"):
        latent, _ = sample(pack, patched, scene, 1)
    cal = node(calibration.AdaCacheCalibrate)
    plan, moreg, text = cal.execute(
        patched, latent, 3.0, False, "demo model", calibration.RUNS_ALL
    ).args
    assert isinstance(plan, CalibratedPlan) and moreg is None
    assert "2 run(s) of 30 steps (2 video(s))" in text
    assert plan.codebook.editor_text() in text
    codebook = plan.codebook  # the plain codebook it carries (shown in the editor)
    path = user_dir / "default" / "adacache" / "codebooks" / "demo model.json"
    data = json.loads(path.read_text())
    assert {k: data[k] for k in plan.to_dict()} == plan.to_dict()  # the whole plan
    assert data["kind"] == "calibrated plan"
    assert data["thresholds"] == list(codebook.thresholds)
    assert data["rates"] == list(codebook.rates)
    assert data["speed"] == 3.0 and data["n_steps"] == STEPS and data["runs"] == 2

    # the Codebook Editor lists it and uses the file's values (the fields only display)
    editor = nodes.AdaCacheCodebookEditor
    options = editor.INPUT_TYPES()["optional"]["saved"][1]["options"]
    assert options[0] == saved_codebooks.USE_VALUES_ABOVE and "demo model" in options
    loaded = editor.execute("0.5, 1", "9, 1", "demo model").args[0]
    assert loaded == plan
    fields = saved_codebooks.USE_VALUES_ABOVE
    assert editor.execute("0.5, 1", "9, 1", fields).args[0].rates == (9, 1)
    # the log's form pastes back into the editor as is (the plain codebook: fields hold no plan)
    plain = (codebook.thresholds, codebook.rates)
    pasted = editor.execute(codebook.editor_text(), "").args[0]
    assert (pasted.thresholds, pasted.rates) == plain
    thresholds_line, rates_line = (p.split(":", 1)[1] for p in codebook.editor_text().split("|"))
    pasted = editor.execute(thresholds_line, rates_line).args[0]
    assert (pasted.thresholds, pasted.rates) == plain
    # re-saving under the same name changes the fingerprint, so ComfyUI re-runs the editor
    before = editor.fingerprint_inputs("", "", "demo model")
    listed = saved_codebooks.list_codebooks()
    assert [c["name"] for c in listed] == ["demo model"] and listed[0]["n_steps"] == STEPS
    assert listed[0]["kind"] == "calibrated plan" and listed[0]["speed"] == 3.0

    # 'latest run only' and 'then start over'
    _, _, text = cal.execute(patched, latent, 2.0, False, "demo model", calibration.RUNS_LATEST
                             ).args
    assert "1 run(s) of 30 steps (1 video(s))" in text
    assert editor.fingerprint_inputs("", "", "demo model") != before
    cal.execute(patched, latent, 3.0, False, "", calibration.RUNS_ALL_THEN_FORGET)
    assert calibration.STORE.runs(calibration.store_key(model)) == []
    with pytest.raises(ValueError, match="no calibration run recorded"):
        cal.execute(patched, latent, 3.0, False, "", calibration.RUNS_ALL)


def test_an_old_saved_plan_file_loads_as_a_plan_and_runs_as_one(pack, model, user_dir):
    """A file AdaCache Calibrate wrote before plans had a type of their own (no "kind") is
    listed, picked and run as a calibrated plan; an old codebook file as a codebook."""
    from comfyui_adacache.nodes import saved_codebooks

    nodes = pack[0]
    folder = user_dir / "default" / "adacache" / "codebooks"
    folder.mkdir(parents=True)
    (folder / "old plan.json").write_text(json.dumps(OLD_PLAN_FILE, indent=1))
    (folder / "old codebook.json").write_text(json.dumps(
        {"name": "old codebook", "thresholds": [100.0, 200.0], "rates": [3, 1]}))
    listed = {c["name"]: c for c in saved_codebooks.list_codebooks()}
    assert listed["old plan"]["kind"] == "calibrated plan" and listed["old plan"]["speed"] == 2.0
    assert listed["old codebook"]["kind"] == "codebook" and listed["old codebook"]["speed"] is None
    editor = nodes.AdaCacheCodebookEditor
    plan = editor.execute("", "", "old plan").args[0]
    assert isinstance(plan, CalibratedPlan) and plan == codebook_or_plan(OLD_PLAN_FILE)
    assert editor.execute("", "", "old codebook").args[0] == Codebook((100.0, 200.0), (3, 1))
    _, summary = sample(pack, apply(pack, model, "old-1", "fast", codebook=plan), "static", 0,
                        steps=12)
    values = summary["codebook_values"]
    assert values["kind"] == "calibrated plan" and values["speed"] == 2.0
    assert values["thresholds"] == OLD_PLAN_FILE["thresholds"]  # its plain codebook, shown
    assert any(r["reference_distance"] is not None for r in summary["trace"])
    assert "calibrated plan for 2x fewer block-stack steps" in format_summary(summary)
    assert "the connected calibrated plan replaces preset 'fast'" in summary["warnings"][0]


def test_a_batch_is_recorded_as_one_run_of_several_videos(pack, model, user_dir):
    calibration = pack[1]
    calibration.STORE.clear(calibration.store_key(model))
    patched = apply(pack, model, "cal-5", "calibrate")
    latent, summary = sample(pack, patched, "camera pan", 7, steps=12, batch=3)
    runs = calibration.STORE.runs(calibration.store_key(model))
    assert len(runs) == 1 and runs[0].batch == 3
    row = runs[0].sample
    assert row.n_steps == 12 and row.distances[0] is None
    assert list(row.distances) == [r["distance"] for r in summary["trace"]]
    assert all(m is not None for m in row.motions[1:])
    assert summary["calibration_sample"]["distances"] == list(row.distances)
    _, _, text = node(calibration.AdaCacheCalibrate).execute(
        patched, latent, 2.0, False, "", calibration.RUNS_LATEST).args
    assert "1 run(s) of 12 steps (3 video(s))" in text
    calibration.STORE.clear(calibration.store_key(model))


def test_calibrate_node_explains_wrong_inputs(pack, model, user_dir):
    nodes, calibration = pack[0], pack[1]
    cal = node(calibration.AdaCacheCalibrate)
    with pytest.raises(ValueError, match="not patched by AdaCache"):
        cal.execute(model, LATENT, 3.0, False, "", calibration.RUNS_ALL)
    with pytest.raises(ValueError, match="set it to 'calibrate'"):
        cal.execute(apply(pack, model, "cal-3", "fast"), LATENT, 3.0, False, "",
                    calibration.RUNS_ALL)
    calibration.STORE.add(calibration.store_key(model), calibration.RecordedRun(
        CalibrationSample(tuple([None] + [0.1 * i for i in range(1, 10)])), None, 0,
        "run-a"))
    patched = apply(pack, model, "cal-3", "calibrate")
    with pytest.raises(ValueError, match="speed"):
        cal.execute(patched, LATENT, math.nan, False, "", calibration.RUNS_ALL)
    with pytest.raises(ValueError, match="not usable as a file name"):
        cal.execute(patched, LATENT, 3.0, False, "../escape", calibration.RUNS_ALL)
    with pytest.raises(ValueError, match="not found"):
        nodes.AdaCacheCodebookEditor.execute("0.1, 1", "2, 1", "no such codebook")
    # an unwritable user directory: the fitted codebook is still output, the summary says why
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "default").write_text("a file where the folder should be")
    plan, _, text = cal.execute(patched, LATENT, 3.0, False, "mine", calibration.RUNS_ALL).args
    assert isinstance(plan, CalibratedPlan) and "could not save 'mine'" in text
    calibration.STORE.clear(calibration.store_key(model))


@pytest.fixture(scope="module")
def held_out(pack, model):
    """Calibrated on seeds 0-2 of static and fast-motion scenes; the calibrated codebook (no
    MoReg) then run on held-out seeds 10 and 11 of both classes."""
    calibration = pack[1]
    calibration.STORE.clear(calibration.store_key(model))
    patched = apply(pack, model, "cal-4", "calibrate")
    for seed in (0, 1, 2):
        for scene in ("static", "fast motion"):
            latent, _ = sample(pack, patched, scene, seed)
    plan, _, text = node(calibration.AdaCacheCalibrate).execute(
        patched, latent, 3.0, False, "", calibration.RUNS_ALL_THEN_FORGET).args
    cached = apply(pack, model, "run-4", "fast", codebook=plan)  # connected: it wins
    runs = {}
    for seed in (10, 11):
        for scene in ("static", "fast motion"):
            _, summary = sample(pack, cached, scene, seed)
            assert summary["codebook"] == plan.describe()
            assert summary["codebook_values"]["kind"] == "calibrated plan"
            assert "the connected calibrated plan replaces preset 'fast'" in summary["warnings"][0]
            runs[scene, seed] = (summary["computed_steps"], summary["pattern"])
    return text, runs


def test_calibrated_codebook_schedule_differs_by_scene_on_held_out_seeds(held_out):
    text, runs = held_out
    for seed in (10, 11):
        assert runs["static", seed][1] != runs["fast motion", seed][1], (text, runs)


def test_a_connected_codebook_wins_and_the_run_says_so(pack, model):
    from comfyui_adacache.adacache import Codebook

    every_third = Codebook((100.0, 200.0), (3, 1))
    for preset in ("fast", "slow"):
        _, summary = sample(pack, apply(pack, model, "cb-1", preset, codebook=every_third),
                            "static", 0, steps=12)
        assert summary["codebook"] == every_third.describe()
        assert summary["pattern"] == "CC..C..C..CC"
        assert f"the connected codebook replaces preset '{preset}'" in summary["warnings"][0]
    _, summary = sample(pack, apply(pack, model, "cb-2", "calibrate", codebook=every_third),
                        "static", 0, steps=12)
    assert summary["pattern"] == "C" * 12
    assert "the connected codebook is not used" in summary["warnings"][0]


# --- report -----------------------------------------------------------------------------------


def test_report_node_image_and_summary(pack, model):
    report = pack[2]
    patched = apply(pack, model, "rep-1", "fast")
    latent, summary = sample(pack, patched, "camera pan", 3)
    out = node(report.AdaCacheReport, "rep-2").execute(patched, latent)
    image, text = out.args
    assert image.shape == (1, report.HEIGHT, report.WIDTH, 3) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    # drawn: more than the background, and the computed strip's colour (the node's) is there
    assert (image < 0.99).any(dim=-1).float().mean() > 0.02
    computed = ((image[0] * 255 - torch.tensor(report.COMPUTED)).abs() < 2).all(dim=-1)
    assert computed.sum() > 100
    assert text.startswith("AdaCache [") and "thresholds:" in text and "| rates:" in text
    assert out.ui["images"][0]["type"] == "temp"
    assert out.ui["adacache_trace"][0]["pattern"] == summary["pattern"]
    json.dumps(out.ui["adacache_trace"], allow_nan=False)  # JSON-safe: no NaN/inf
    # no run yet: an image that says so, not a failure
    image, text = node(report.AdaCacheReport).execute(
        apply(pack, model, "rep-3", "fast"), latent).args
    assert image.shape == (1, report.HEIGHT, report.WIDTH, 3) and "no sampling run" in text
    with pytest.raises(ValueError, match="not patched by AdaCache"):
        node(report.AdaCacheReport).execute(model, latent)


def test_report_draws_a_moreg_run_and_a_partial_summary(pack, model):
    report = pack[2]
    from comfyui_adacache.adacache import MoRegSettings

    patched = apply(pack, model, "rep-4", "fast", moreg=MoRegSettings(norm_a=0.2))
    _, summary = sample(pack, patched, "fast motion", 0, steps=12)
    assert summary["moreg"]
    im = report.render_report(summary)
    assert im.size == (report.WIDTH, report.HEIGHT)
    # a summary from a failed reporting path (finish() fallback) still renders
    im = report.render_report({"family": "wan", "steps": 12, "warnings": ["x"], "trace": []})
    assert im.size == (report.WIDTH, report.HEIGHT)


# --- robustness -------------------------------------------------------------------------------


def test_interrupt_keeps_its_own_exception_and_the_report(pack, model):
    import comfy.model_management

    patched = apply(pack, model, "int-1", "fast")

    def interrupt_at_step_8(step, *args):
        if step == 8:
            comfy.model_management.interrupt_current_processing(True)

    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            sample(pack, patched, "static", 0, callback=interrupt_at_step_8)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    summary = summary_of(patched)
    assert 8 <= summary["steps_reached"] < STEPS


def test_no_reuse_advice_names_the_real_cause(pack, model):
    from comfyui_adacache.adacache import Codebook

    # start/end percent leave no step to cache
    patched = apply(pack, model, "adv-1", "fast", start_percent=1.0, end_percent=1.0)
    _, summary = sample(pack, patched, "static", 0, steps=12)
    advice = [w for w in summary["warnings"] if "no step was reused" in w]
    assert len(advice) == 1 and "start_percent/end_percent" in advice[0], summary["warnings"]
    # a codebook of rate 1 only: the suggestion is a codebook that reuses steps
    ones = Codebook((0.5, 1.0), (1, 1))
    _, summary = sample(pack, apply(pack, model, "adv-2", "custom", codebook=ones), "static", 0,
                        steps=12)
    advice = [w for w in summary["warnings"] if "no step was reused" in w]
    assert len(advice) == 1 and "every distance" in advice[0], summary["warnings"]
    rates_part = summary["calibrated_codebook"].split("rates:")[1]
    assert any(int(r) > 1 for r in rates_part.split(",")), summary["calibrated_codebook"]
    assert rates_part.strip() in advice[0]


def test_calibrated_codebook_never_raises_nor_suggests_rate_one_only():
    from comfyui_adacache.adacache import Codebook, calibrated_codebook

    # thresholds that collide at 4 significant digits: more digits, strictly increasing
    cb = calibrated_codebook([0.100001, 0.100002, 0.100003], (6, 5, 4, 3, 2, 1))
    assert cb is not None and all(b > a for a, b in zip(cb.thresholds, cb.thresholds[1:],
                                                         strict=False))
    assert Codebook.from_text(*cb.editor_text().split("|")) == cb
    assert calibrated_codebook([0.1, 0.2, 0.3], (1, 1, 1)) is None
    assert calibrated_codebook([math.nan, math.inf, 0.1], (2, 1)) is None
    assert calibrated_codebook(["x", 0.1], (2, 1)) is None


def test_nan_and_literal_values_fail_with_clear_errors(pack, model):
    nodes = pack[0]
    from comfyui_adacache.adacache import Codebook, CodebookError, MoRegSettings

    moreg_args = dict(enabled=True, frame_strides="1", norm_a=0.385, norm_p=8.0, norm_b=1.0,
                      gradient_scale=10.0, window_start=0.1, window_end=0.9)
    for name in ("norm_a", "norm_p", "norm_b", "gradient_scale", "window_start", "window_end"):
        for bad in (math.nan, math.inf):
            with pytest.raises(ValueError, match=f"{name} .* finite"):
                nodes.AdaCacheMoRegSettings.execute(**{**moreg_args, name: bad})
            with pytest.raises(ValueError, match=f"{name} .* finite"):
                MoRegSettings(**{name: bad})
    for name in ("start_percent", "end_percent"):
        with pytest.raises(ValueError, match=f"{name} .* finite"):
            apply(pack, model, "nan-1", "fast", **{name: math.nan})
    with pytest.raises(CodebookError, match="threshold 2"):
        Codebook.from_text("0.1, nan", "2, 1")
    with pytest.raises(CodebookError, match="threshold 1"):
        Codebook.from_json('{"thresholds": [Infinity], "rates": [2]}')
    with pytest.raises(ValueError, match="'codebook' got str .*Codebook Editor"):
        apply(pack, model, "lit-1", "custom", codebook="0.1, 1")
    with pytest.raises(ValueError, match="'moreg' got dict .*MoReg Settings"):
        apply(pack, model, "lit-2", "fast", moreg={"norm_a": 0.2})


def test_preset_tooltip_explains_every_preset(pack):
    nodes = pack[0]
    spec = nodes.AdaCacheApply.INPUT_TYPES()["required"]["preset"][1]
    assert spec["options"][-1] == "calibrate"
    tooltip = spec["tooltip"]
    for preset in spec["options"]:
        assert f"{preset}:" in tooltip, preset
    assert "At 30 steps" in tooltip and "6, 5, 4, 3, 2, 1" in tooltip


def test_format_summary_of_an_incomplete_summary_never_raises():
    from comfyui_adacache.adacache import format_summary, format_trace

    partial = {"family": "Wan", "steps": 12, "warnings": ["could not build"], "trace": []}
    assert "incomplete run summary" in format_summary(partial)
    assert "could not build" in format_summary(partial)
    assert format_trace(partial).startswith("step")
