"""What the Notes on the example workflows claim, checked against what the pack does.

Each checkable sentence of a Note is quoted here, so a changed Note fails until its check is
updated, and checked: against the workflow the Note sits in (its preset, sampler steps, nodes
and links) and against real runs of the shipped demo model through the pack's nodes and
ComfyUI's own samplers (in-process, CPU, a few seconds each). The workflows are written by
scripts/make_example_workflows.py and scripts/make_demo_workflow.py.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path

import pytest
import torch
from make_demo_workflow import CALIBRATE_SPEED, PLAN_NAME  # scripts/ is on sys.path (comfy_host)
from make_example_workflows import DEMO_FILE, MOREG_TEXT, PRESETS_TEXT, VERBOSE_TEXT, WORKFLOWS
from test_calibration import node, user_dir  # noqa: F401  (user_dir: a fixture)
from wan_fixtures import summary_of

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "diffusion_models" / "adacache_demo_wan.safetensors"
APPLY_DEFAULTS = dict(metric="l1", metric_blocks="middle", start_percent=0.0, end_percent=1.0,
                      verbose=False, offload_cache=False)
EXAMPLES = list(WORKFLOWS)
VIDEO_EXAMPLES = [t for t in EXAMPLES if not t.startswith("Flux")]
WAN21 = "Wan 2.1 text to video 1.3B"
WAN21_I2V = "Wan 2.1 image to video 14B"
WAN22 = "Wan 2.2 14B, two experts"
WAN22_5B = "Wan 2.2 TI2V 5B"
HUNYUAN = "HunyuanVideo text to video"
LTXV = "LTX-Video text to video"
MOCHI = "Mochi text to video"
COSMOS = "Cosmos Predict2 image to video"
FLUX = "Flux.1 dev text to image"
PAPER_FAST_30 = ((0.08, 0.16, 0.24, 0.32, 0.4, 1.0), (6, 5, 4, 3, 2, 1))  # the paper's codebook


# --- the workflows and their notes ---------------------------------------------------------------


def workflow(title: str) -> dict:
    return json.loads((ROOT / "workflows" / f"{title}.json").read_text())


def notes(title: str) -> str:
    text = " ".join(n["widgets_values"][0] for n in workflow(title)["nodes"]
                    if n["type"] in ("Note", "MarkdownNote"))
    return re.sub(r"\s+", " ", text)


def says(title: str, *sentences: str) -> None:
    text = notes(title)
    for sentence in sentences:
        assert re.sub(r"\s+", " ", sentence) in text, f"{title}: the note lost {sentence!r}"


def of_type(wf: dict, kind: str) -> list[dict]:
    return [n for n in wf["nodes"] if n["type"] == kind]


def source(wf: dict, node: dict, input_name: str) -> dict | None:
    slot = next(i for i in node["inputs"] if i["name"] == input_name)
    if slot["link"] is None:
        return None
    link = next(lk for lk in wf["links"] if lk[0] == slot["link"])
    return next(n for n in wf["nodes"] if n["id"] == link[1])


# --- real runs of the demo model through the pack's nodes -----------------------------------------


@pytest.fixture(scope="module")
def pack():
    from comfyui_adacache.nodes import adacache_nodes, calibration_nodes, demo_latent, demo_nodes

    return adacache_nodes, calibration_nodes, demo_nodes, demo_latent


@pytest.fixture(scope="module")
def model():
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(MODEL))


def apply(pack, model, preset, codebook=None, moreg=None, unique_id="notes", **overrides):
    out = node(pack[0].AdaCacheApply, unique_id).execute(
        model, preset, codebook=codebook, moreg=moreg, **{**APPLY_DEFAULTS, **overrides})
    return out.args[0]


def run(pack, patched, steps=12, seed=0, scene="fast motion", start=None, last=None,
        latent=None):
    """KSampler (or KSamplerAdvanced with start/last) on the demo model; (latent, summary)."""
    import comfy.sample

    demo_nodes, demo_latent = pack[2], pack[3]
    pos, neg = demo_nodes.AdaCacheDemoScene.execute(scene).args
    lat = torch.zeros(1, 16, demo_latent.FRAMES, demo_latent.LATENT_HW, demo_latent.LATENT_HW)
    noise = comfy.sample.prepare_noise(lat, seed)
    if latent is not None:  # the second KSamplerAdvanced: continues, adds no noise
        lat, noise = latent, torch.zeros_like(latent)
    out = comfy.sample.sample(patched, noise, steps, 3.0, "euler", "simple", pos, neg, lat,
                              start_step=start, last_step=last, seed=seed, disable_pbar=True)
    return out, summary_of(patched, out)


def preset(name: str, steps: int):
    from comfyui_adacache.adacache import preset_codebook

    return preset_codebook(name, steps)


# --- what every example's note says ---------------------------------------------------------------


@pytest.mark.parametrize("title", EXAMPLES)
def test_note_names_the_preset_the_workflow_uses(title):
    wf = workflow(title)
    applies = of_type(wf, "AdaCacheApply")
    said = re.search(r"AdaCache on .+?: preset '(\w+)'", notes(title))
    assert said, "the note does not name its preset"
    if len(applies) == 1:
        assert applies[0]["widgets_values"][0] == said.group(1)
    else:  # the two experts
        says(title, "preset 'medium' on the high-noise expert, 'fast' on the low-noise expert")
        by_title = {n["title"]: n["widgets_values"][0] for n in applies}
        assert by_title == {"AdaCache Apply (high-noise expert)": "medium",
                            "AdaCache Apply (low-noise expert)": "fast"}
    assert "ignored" not in notes(title).lower()  # a connected codebook is never ignored


def test_a_connected_codebook_is_used_whatever_the_preset(pack, model):
    """'A connected codebook (Codebook Editor) or calibrated plan (AdaCache Calibrate) is used
    whatever the preset, except 'calibrate'; the log says it replaced the preset.' (the plan:
    test_calibration's held-out runs)"""
    from comfyui_adacache.adacache import Codebook

    for title in EXAMPLES:
        says(title, PRESETS_TEXT)
    every_third = Codebook((100.0, 200.0), (3, 1))
    for name in ("fast", "medium", "slow"):
        _, summary = run(pack, apply(pack, model, name, codebook=every_third))
        assert summary["codebook"] == every_third.describe()
        assert summary["pattern"] == "CC..C..C..CC"
        assert any(f"replaces preset '{name}'" in w for w in summary["warnings"])
    _, summary = run(pack, apply(pack, model, "calibrate", codebook=every_third))
    assert summary["pattern"] == "C" * 12


def test_presets_scale_with_steps_and_fast_at_30_is_the_papers():
    """'Presets (scaled to your step count): fast = most reuse (the paper's AdaCache-fast at
    30 steps), medium = in between, slow = closest to the uncached video.'"""
    fast30 = preset("fast", 30)
    assert (fast30.thresholds, fast30.rates) == PAPER_FAST_30
    for steps in (20, 30, 50):
        fast, medium, slow = (preset(n, steps) for n in ("fast", "medium", "slow"))
        assert all(s <= m <= f for s, m, f in zip(slow.rates, medium.rates, fast.rates,
                                                  strict=True)), steps
        assert sum(slow.rates) < sum(medium.rates) < sum(fast.rates)
    assert preset("fast", 20) != fast30 and preset("fast", 50) != fast30


def test_verbose_logs_per_step_computed_or_reused_and_the_rate(pack, model, caplog):
    for title in EXAMPLES:
        says(title, VERBOSE_TEXT)
    with caplog.at_level(logging.INFO, logger="AdaCache"):
        _, summary = run(pack, apply(pack, model, "fast", verbose=True))
    trace = next(r.getMessage() for r in caplog.records if "AdaCache trace" in r.getMessage())
    rows = trace.splitlines()[2:]  # title, column header, then one row per step
    assert len(rows) == 12 and "rate" in trace.splitlines()[1]
    modes = "".join("C" if " compute " in r else "." if " reuse " in r else "?" for r in rows)
    assert modes == summary["pattern"] and "." in modes
    computed = [r for r in rows if " compute " in r and "scheduled" in r]
    assert computed and all(re.search(r"\s\d+\s+(compute|$)", r) for r in computed)


def test_moreg_is_off_when_disabled_or_disconnected(pack, model):
    """'MoReg Settings: recompute more often when the video moves fast ... Set 'enabled' to
    false or disconnect it to compare.'"""
    for title in VIDEO_EXAMPLES:
        says(title, MOREG_TEXT)
        for apply_node in of_type(workflow(title), "AdaCacheApply"):
            assert source(workflow(title), apply_node, "moreg")["type"] == "AdaCacheMoRegSettings"
    settings = pack[0].AdaCacheMoRegSettings

    def moreg(enabled):
        return settings.execute(enabled, "1", 0.2, 8.0, 1.0, 10.0, 0.1, 0.9).args[0]

    assert run(pack, apply(pack, model, "fast", moreg=moreg(True)))[1]["moreg"] is True
    assert run(pack, apply(pack, model, "fast", moreg=moreg(False)))[1]["moreg"] is False
    assert run(pack, apply(pack, model, "fast"))[1]["moreg"] is False


# --- one example each ---------------------------------------------------------------------------


def test_wan21_custom_codebook_note(pack, model):
    says(WAN21,
         "A custom codebook is used as typed, not scaled to the step count: these values are for "
         "this example's 30 steps.",
         "A distance below 0.08 runs the block stack again 5 steps later (the 4 steps between "
         "reuse it), below 0.16 after 4 steps, ..., and a distance of 0.4 or more runs it every "
         "step.",
         "The rates lie between the 'medium' (4, 3, 2, 2, 1, 1) and 'fast' (6, 5, 4, 3, 2, 1) "
         "presets at 30 steps.",
         "while a codebook is connected, it is used whatever the preset says.")
    wf = workflow(WAN21)
    (apply_node,) = of_type(wf, "AdaCacheApply")
    editor = source(wf, apply_node, "codebook")
    assert editor["type"] == "AdaCacheCodebookEditor"
    assert of_type(wf, "KSampler")[0]["widgets_values"][2] == 30
    codebook = pack[0].AdaCacheCodebookEditor.execute(*editor["widgets_values"]).args[0]
    assert codebook.thresholds[0] == 0.08 and codebook.thresholds[1] == 0.16
    assert codebook.rate_for(0.079) == 5 and codebook.rate_for(0.15) == 4
    assert codebook.rate_for(0.4) == 1 and codebook.rate_for(5.0) == 1
    medium, fast = preset("medium", 30), preset("fast", 30)
    assert medium.rates == (4, 3, 2, 2, 1, 1) and fast.rates == (6, 5, 4, 3, 2, 1)
    assert all(m <= c <= f for m, c, f in zip(medium.rates, codebook.rates, fast.rates,
                                              strict=True))
    # "used as typed": the same codebook at 12 steps as at 30
    for steps in (12, 30):
        _, summary = run(pack, apply(pack, model, "custom", codebook=codebook), steps=steps)
        assert summary["codebook"] == codebook.describe()
    # "5 steps later (the 4 steps between reuse it)": rate 5 on every distance
    from comfyui_adacache.adacache import Codebook

    _, summary = run(pack, apply(pack, model, "custom", codebook=Codebook((1e3, 2e3), (5, 1))),
                     steps=14)
    assert summary["pattern"] == "CC....C....CCC"


def test_wan21_i2v_note_on_20_steps():
    says(WAN21_I2V, "At 20 steps the preset is scaled from the paper's 30-step codebook to "
         "higher thresholds and lower rates (fast at 20 steps: rates 4, 3, 3, 2, 1, 1).")
    assert of_type(workflow(WAN21_I2V), "KSampler")[0]["widgets_values"][2] == 20
    fast20, fast30 = preset("fast", 20), preset("fast", 30)
    assert fast20.rates == (4, 3, 3, 2, 1, 1)
    assert all(a > b for a, b in zip(fast20.thresholds, fast30.thresholds, strict=True))
    assert all(a <= b for a, b in zip(fast20.rates, fast30.rates, strict=True))
    assert fast20.rates != fast30.rates


def test_wan22_experts_are_sized_for_the_whole_schedule(pack, model):
    says(WAN22, "each sampler runs only its part of the schedule (steps 0-10 and 10-20 here), "
         "and each preset is sized for the whole 20-step schedule, not for the 10 steps its "
         "expert sees.")
    says(WAN22, "One MoReg Settings node feeds both.")
    wf = workflow(WAN22)
    (moreg,) = of_type(wf, "AdaCacheMoRegSettings")
    assert [source(wf, n, "moreg")["id"] for n in of_type(wf, "AdaCacheApply")] == [moreg["id"]] * 2
    samplers = sorted(of_type(wf, "KSamplerAdvanced"),
                      key=lambda n: n["widgets_values"][7])
    assert [(s["widgets_values"][3], s["widgets_values"][7], s["widgets_values"][8])
            for s in samplers] == [(20, 0, 10), (20, 10, 10000)]
    high = apply(pack, model, "medium", unique_id="high")
    low = apply(pack, model, "fast", unique_id="low")
    latent, high_summary = run(pack, high, steps=20, start=0, last=10)
    _, low_summary = run(pack, low, steps=20, start=10, last=10000, latent=latent)
    for summary, name in ((high_summary, "medium"), (low_summary, "fast")):
        assert summary["steps_reached"] == 10
        assert summary["codebook_steps"] == pytest.approx(20, abs=0.5)
        sized = preset(name, summary["codebook_steps"])  # the step density it measured
        assert summary["codebook"] == sized.describe()
        assert sized.rates == preset(name, 20).rates != preset(name, 10).rates


def test_wan22_5b_note_on_the_bypassed_start_frame():
    says(WAN22_5B, "Text-to-video as saved; un-bypass Load Image (Ctrl+B) for image-to-video.")
    wf = workflow(WAN22_5B)
    (image,) = of_type(wf, "LoadImage")
    assert image["mode"] == 4  # bypassed
    (latent,) = of_type(wf, "Wan22ImageToVideoLatent")
    assert source(wf, latent, "start_image")["id"] == image["id"]


def test_hunyuan_note_on_streams_and_calls_per_step():
    from comfyui_adacache.adacache import FAMILIES

    says(HUNYUAN, "HunyuanVideo runs a double-stream and a single-stream block stack; AdaCache "
         "caches the residual across both (text tokens included) and takes motion from the "
         "video tokens only.",
         "Guidance is distilled (one model call per step, FluxGuidance), so every reused step "
         "saves a whole call: 'fast' at 20 steps.")
    family = next(f for f in FAMILIES if f.name == "HunyuanVideo")
    assert [kind for _, kind in family.stacks] == ["double_block", "single_block"]
    assert "txt" in family.stream_keys and family.is_video
    wf = workflow(HUNYUAN)
    assert of_type(wf, "BasicGuider") and of_type(wf, "FluxGuidance")  # no CFG: one call
    assert not of_type(wf, "CFGGuider") and not of_type(wf, "KSampler")
    assert of_type(wf, "BasicScheduler")[0]["widgets_values"][1] == 20


def test_ltxv_and_mochi_step_counts():
    says(LTXV, "'medium' at 30 steps")
    assert of_type(workflow(LTXV), "LTXVScheduler")[0]["widgets_values"][0] == 30
    says(MOCHI, "at 30 steps 'fast' is the paper's AdaCache-fast codebook exactly")
    assert of_type(workflow(MOCHI), "KSampler")[0]["widgets_values"][2] == 30
    fast30 = preset("fast", 30)
    assert (fast30.thresholds, fast30.rates) == PAPER_FAST_30


def test_cosmos_runs_whole_model():
    import comfy.ldm.cosmos.predict2
    from comfyui_adacache.adacache import FAMILIES, WHOLE

    says(COSMOS, "Cosmos predict2 offers no per-block replacement in ComfyUI, so AdaCache uses "
         "its whole-model mode: a reused step skips the diffusion model's forward and reuses "
         "its output residual, with the distance taken on the output.")
    assert "patches_replace" not in inspect.getsource(comfy.ldm.cosmos.predict2)
    family = next(f for f in FAMILIES if "MiniTrainDIT" in f.class_names)
    assert family.mode == WHOLE


def test_flux_note_on_moreg_for_images():
    from comfyui_adacache.adacache import FAMILIES, AdaCacheConfig, AdaCacheRun, MoRegSettings

    says(FLUX, "this example has no MoReg Settings node (connected to an image model, it "
         "changes nothing and AdaCache warns that its factor stays 1)")
    says(FLUX, "'slow' keeps it closest to the uncached result; 'medium' or 'fast' give quick "
         "drafts.")
    assert of_type(workflow(FLUX), "AdaCacheApply")[0]["widgets_values"][0] == "slow"
    assert not of_type(workflow(FLUX), "AdaCacheMoRegSettings")
    flux = next(f for f in FAMILIES if f.name == "Flux")
    sigmas = [1.0 - i / 20 for i in range(21)]
    with_moreg = AdaCacheRun(AdaCacheConfig("slow", moreg=MoRegSettings()), flux, 19, sigmas)
    assert with_moreg.schedule.regularizer is not None  # connected, it would run ...
    assert any("factor stays 1" in w for w in with_moreg.warnings)  # ... and says it does nothing
    assert not AdaCacheRun(AdaCacheConfig("slow"), flux, 19, sigmas).warnings


# --- the demo's note: calibrate, then run --------------------------------------------------------


def test_demo_note_on_calibrate_then_run(pack, model, user_dir):  # noqa: F811
    from comfyui_adacache.nodes.demo_nodes import DEMO_ENV, demo_enabled

    title = DEMO_FILE[:-len(".json")]
    says(title,
         "appear only when ComfyUI is started with the environment variable ADACACHE_DEMO=1",
         "1 · calibrate: AdaCache Apply with preset 'calibrate' computes every step (full "
         "quality, no speedup)",
         f"AdaCache Calibrate fits a plan to the recorded runs for {CALIBRATE_SPEED:g}x fewer "
         "block-stack steps (about 10 of the 30), also fits MoReg, and saves the plan as "
         f"'{PLAN_NAME}' (a Codebook Editor can pick it by that name).",
         "Its KSampler's seed increments on each queue, so every queue records one more video.",
         "2 · run: the second AdaCache Apply takes the plan and the MoReg settings from AdaCache "
         "Calibrate")
    says(title, "'make demo' in the pack's folder runs the same demo headless and writes its "
         "results to demo_output/.")
    assert DEMO_ENV == "ADACACHE_DEMO" and not demo_enabled({})  # test_packaging: real server
    assert re.search(r"^demo: .*\n\t\$\(PY\) scripts/demo\.py$", (ROOT / "Makefile").read_text(),
                     re.M)
    demo_script = (ROOT / "scripts" / "demo.py").read_text()
    assert 'default=ROOT / "demo_output"' in demo_script and "demo=True" in demo_script
    wf = workflow(title)
    by_title = {n.get("title"): n for n in of_type(wf, "AdaCacheApply")}
    cal_apply, run_apply = by_title["AdaCache Apply (1 · calibrate)"], \
        by_title["AdaCache Apply (2 · run)"]
    assert cal_apply["widgets_values"][0] == "calibrate"
    (cal,) = of_type(wf, "AdaCacheCalibrate")
    assert cal["widgets_values"][:3] == [CALIBRATE_SPEED, True, PLAN_NAME]
    assert source(wf, cal, "model")["id"] == cal_apply["id"]
    cal_sampler = source(wf, cal, "latent")
    assert cal_sampler["type"] == "KSampler" and cal_sampler["widgets_values"][1] == "increment"
    assert cal_sampler["widgets_values"][2] == 30
    assert source(wf, run_apply, "codebook")["id"] == cal["id"]
    assert source(wf, run_apply, "moreg")["id"] == cal["id"]

    # the path itself, as one queue each: calibration runs compute every step ...
    nodes_, calibration = pack[0], pack[1]
    calibration.STORE.clear("demo-cal")
    patched = apply(pack, model, "calibrate", unique_id="demo-cal")
    for seed in (100, 101):  # the seed increments on each queue
        latent, summary = run(pack, patched, steps=30, seed=seed)
        assert summary["pattern"] == "C" * 30
    # ... Calibrate fits a plan for 3x fewer block-stack steps and MoReg, saved by name ...
    codebook, moreg, _ = node(calibration.AdaCacheCalibrate).execute(
        patched, {"samples": latent}, CALIBRATE_SPEED, True, PLAN_NAME, calibration.RUNS_ALL
    ).args
    assert moreg is not None
    assert nodes_.AdaCacheCodebookEditor.execute("", "", PLAN_NAME).args[0] == codebook
    # ... and the run with the plan computes about 10 of its 30 steps
    _, summary = run(pack, apply(pack, model, "custom", codebook=codebook, moreg=moreg,
                                 unique_id="demo-run"), steps=30, seed=0)
    assert 8 <= summary["computed_steps"] <= 13, summary["pattern"]
