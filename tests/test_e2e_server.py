"""End to end: the pack inside a real, headless ComfyUI server (CPU), driven over HTTP.

One server per session (fixtures ``server`` and ``object_info`` in conftest.py, started by
``comfy_server.running_server``; see that module for how it is isolated), with a tiny random
Wan 2.1 checkpoint (``comfy_server.CKPT``) that "Load Diffusion Model" (UNETLoader) detects as
WAN21.

Checked: the three nodes and their tooltips in ``/object_info``; a workflow with AdaCache
(preset fast with MoReg, and a custom codebook) samples and saves latents; the same workflow
queued twice gives bit-identical latents (the second time with the loader and AdaCache Apply
cached by the server); AdaCache's per-run trace reaches the websocket client; an invalid
codebook fails the prompt with an error naming the bad entry.
"""

from __future__ import annotations

import json
import time

import torch
from comfy_server import CKPT
from safetensors.torch import load_file

STEPS = 12
PACK_NODES = ("AdaCacheApply", "AdaCacheCodebookEditor", "AdaCacheMoRegSettings",
              "AdaCacheApplyRaylight", "AdaCacheCalibrateRaylight", "AdaCacheReportRaylight")
CUSTOM_THRESHOLDS, CUSTOM_RATES = "100, 200", "3, 1"  # every distance -> rate 3


def defaults(object_info: dict, node: str) -> dict:
    """The node's widget defaults, as the frontend would fill them in."""
    inputs = object_info[node]["input"]
    out = {}
    for section in ("required", "optional"):
        for name, spec in inputs.get(section, {}).items():
            if len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]:
                out[name] = spec[1]["default"]
    return out


def sampling_branch(object_info, *, apply_id, preset, codebook=None, moreg=None, prefix):
    """AdaCache Apply -> KSampler -> SaveLatent, on the shared nodes "1".."4"."""
    a, k, s = apply_id, str(int(apply_id) + 1), str(int(apply_id) + 2)
    apply_inputs = {**defaults(object_info, "AdaCacheApply"), "model": ["1", 0], "preset": preset}
    if codebook:
        apply_inputs["codebook"] = [codebook, 0]
    if moreg:
        apply_inputs["moreg"] = [moreg, 0]
    return {
        a: {"class_type": "AdaCacheApply", "inputs": apply_inputs},
        k: {
            "class_type": "KSampler",
            "inputs": {
                "model": [a, 0], "seed": 42, "steps": STEPS, "cfg": 5.0,
                "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
                "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            },
        },
        s: {"class_type": "SaveLatent", "inputs": {"samples": [k, 0], "filename_prefix": prefix}},
    }


def shared_nodes() -> dict:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": CKPT, "weight_dtype": "default"}},
        "2": {"class_type": "AdaCacheTestConditioning", "inputs": {"seed": 1, "length": 12}},
        "3": {"class_type": "AdaCacheTestConditioning", "inputs": {"seed": 2, "length": 12}},
        "4": {
            "class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": 64, "height": 64, "length": 13, "batch_size": 1},
        },  # 5-D latent [1, 16, 4, 8, 8]: 4 frames of 4 x 4 tokens for Wan
    }


def workflow(object_info) -> dict:
    """Two AdaCache branches: preset fast + MoReg, and custom (Codebook Editor connected)."""
    return {
        **shared_nodes(),
        "5": {
            "class_type": "AdaCacheCodebookEditor",
            "inputs": {"thresholds": CUSTOM_THRESHOLDS, "rates": CUSTOM_RATES},
        },
        "6": {
            "class_type": "AdaCacheMoRegSettings",
            "inputs": defaults(object_info, "AdaCacheMoRegSettings"),
        },
        **sampling_branch(object_info, apply_id="10", preset="fast", moreg="6",
                          prefix="e2e/fast"),
        **sampling_branch(object_info, apply_id="20", preset="custom", codebook="5",
                          prefix="e2e/custom"),
    }


def saved_latent(server, entry: dict, save_node: str) -> torch.Tensor:
    files = entry["outputs"][save_node]["latents"]
    assert len(files) == 1, files
    path = server.output_dir / files[0]["subfolder"] / files[0]["filename"]
    assert path.is_file(), f"{path} was not written"
    return load_file(str(path))["latent_tensor"]


def traces_for(server, prompt_id: str) -> dict[str, dict]:
    """The adacache.trace summaries sent while ``prompt_id`` ran, by AdaCache Apply node id."""
    out = {}
    # The trace is sent before the prompt's history entry is written; allow the socket a moment.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = finished = False
        current = None
        out = {}
        for m in list(server.ws.messages):
            kind, data = m.get("type"), m.get("data") or {}
            if kind == "execution_start":
                current = data.get("prompt_id")
                started = started or current == prompt_id
            elif kind == "adacache.trace" and current == prompt_id:
                out[str(data["node"])] = data
            elif kind == "executing" and data.get("node") is None and current == prompt_id:
                finished = True
        if started and finished:
            return out
        time.sleep(0.2)
    return out


# --- tests ---------------------------------------------------------------------------------


def test_nodes_and_tooltips_in_object_info(object_info):
    for node in PACK_NODES:
        assert node in object_info, f"{node} missing from /object_info"
        info = object_info[node]
        assert info["category"] == "AdaCache"
        assert info["description"]
        inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        assert inputs, node
        for name, spec in inputs.items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            tooltip = options.get("tooltip")
            assert isinstance(tooltip, str) and tooltip.strip(), f"{node}.{name} has no tooltip"
        assert info["output"], node
        tooltips = info.get("output_tooltips") or []
        assert len(tooltips) == len(info["output"]), f"{node}: {tooltips}"
        for i, tooltip in enumerate(tooltips):
            assert isinstance(tooltip, str) and tooltip.strip(), f"{node} output {i}: no tooltip"
    # optional inputs really are optional, and only the test server loads the test-only node
    assert set(object_info["AdaCacheApply"]["input"]["optional"]) == {"codebook", "moreg"}
    raylight = object_info["AdaCacheApplyRaylight"]  # Raylight's socket in and out
    assert raylight["input"]["required"]["ray_actors"][0] == "RAY_ACTORS"
    assert raylight["output"] == ["RAY_ACTORS"]
    calibrate = object_info["AdaCacheCalibrateRaylight"]["input"]["required"]
    assert calibrate["ray_actors"][0] == "RAY_ACTORS" and "speed" in calibrate
    assert "AdaCacheTestConditioning" in object_info


def test_workflow_runs_and_requeue_is_identical(server, object_info):
    graph = workflow(object_info)
    runs = []
    for _ in range(2):  # the second queue re-samples; loader and AdaCache Apply are cached
        prompt_id, entry = server.run(graph)
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:4000]
        latents = {node: saved_latent(server, entry, node) for node in ("12", "22")}
        runs.append((latents, traces_for(server, prompt_id)))

    (first, traces1), (second, traces2) = runs
    for node in ("12", "22"):
        lat = first[node]
        assert lat.shape == (1, 16, 4, 8, 8)
        assert torch.isfinite(lat).all() and lat.abs().sum() > 0
        assert torch.equal(lat, second[node]), f"SaveLatent {node}: re-queue differs"
    assert not torch.equal(first["12"], first["22"])  # the two schedules really differ

    for traces in (traces1, traces2):
        assert set(traces) == {"10", "20"}, traces.keys()
        fast, custom = traces["10"], traces["20"]
        assert fast["family"] == custom["family"]
        assert fast["steps_reached"] == custom["steps_reached"] == STEPS
        assert fast["moreg"] and not custom["moreg"]
        # custom codebook: every distance selects rate 3, so steps are really reused
        assert custom["codebook"] == "{100: 3, 200: 1}"
        assert 0 < custom["computed_steps"] < STEPS
        assert "." in custom["pattern"]
    for node in ("10", "20"):  # the same schedule on the re-queue: no state leaked
        assert traces1[node]["pattern"] == traces2[node]["pattern"]


def test_invalid_codebook_fails_with_named_entry(server, object_info):
    graph = {
        **shared_nodes(),
        "5": {
            "class_type": "AdaCacheCodebookEditor",
            "inputs": {"thresholds": "0.2, 0.1", "rates": "2, 1"},
        },
        **sampling_branch(object_info, apply_id="20", preset="custom", codebook="5",
                          prefix="e2e/invalid"),
    }
    _, entry = server.run(graph)
    status = entry["status"]
    assert status["status_str"] == "error" and not status["completed"]
    errors = [data for kind, data in status["messages"] if kind == "execution_error"]
    assert len(errors) == 1, status["messages"]
    error = errors[0]
    assert error["node_type"] == "AdaCacheCodebookEditor" and error["node_id"] == "5"
    message = error["exception_message"]
    assert "threshold 2" in message and "0.1" in message, message
    assert "22" not in entry["outputs"]  # nothing was saved

    # A preset outside the combo's options. ComfyUI 0.3.75's /prompt validation checks only
    # V1-style list combos, not V3 io.Combo values, so the node itself must refuse it.
    graph["5"]["inputs"]["thresholds"] = CUSTOM_THRESHOLDS
    graph["20"]["inputs"]["preset"] = "warp-speed"
    status_code, body = server.queue(graph)
    if status_code == 400:  # a newer server validating V3 combos
        assert body["node_errors"]["20"]["class_type"] == "AdaCacheApply", body
    else:
        assert status_code == 200, body
        entry = server.wait(body["prompt_id"])
        errors = [d for k, d in entry["status"]["messages"] if k == "execution_error"]
        assert [e["node_id"] for e in errors] == ["20"], entry["status"]["messages"]
        assert "warp-speed" in errors[0]["exception_message"], errors[0]

    # A missing required input is refused by /prompt itself (HTTP 400, errors per node).
    graph["20"]["inputs"]["preset"] = "custom"
    del graph["5"]["inputs"]["thresholds"]
    status_code, body = server.queue(graph)
    assert status_code == 400, body
    assert body["node_errors"]["5"]["class_type"] == "AdaCacheCodebookEditor", body
    assert body["node_errors"]["5"]["errors"][0]["type"] == "required_input_missing", body


def test_the_what_if_route_answers_with_the_cores_rule(server):
    """``POST /adacache/whatif`` gives the core's predict_schedule; bad entries are named."""
    from comfyui_adacache.adacache import codebook_or_plan, predict_schedule, preset_codebook

    sigmas = [1.0 - i / 30 for i in range(31)]
    trace = [{"step": i, "computed": True, "reason": "scheduled",
              "distance": None if i == 0 else 0.02 + 0.3 * (i % 7) / 7} for i in range(30)]
    trace[12]["reason"] = "ControlNet hints"
    codebook = preset_codebook("fast", 30)
    body = {"trace": trace, "sigmas": sigmas, "codebook": codebook.to_dict()}
    status, answer = server.request("/adacache/whatif", body)
    expected = predict_schedule(trace, codebook, sigmas)
    assert status == 200, answer
    assert answer == {"computed": expected.computed, "approximate": expected.approximate,
                      "rates": expected.rates}
    assert 8 < len(answer["computed"]) < 30
    # a calibrated plan is sent as what it is (its kind) and answered by the plan's rule
    from test_plan import OLD_PLAN_FILE

    plan = codebook_or_plan(OLD_PLAN_FILE)
    status, answer = server.request("/adacache/whatif", {**body, "codebook": plan.to_dict()})
    expected = predict_schedule(trace, plan, sigmas)
    assert status == 200 and answer["computed"] == expected.computed, answer
    assert expected.computed != predict_schedule(trace, plan.codebook, sigmas).computed
    for bad, named in (
        ({**body, "codebook": {"thresholds": [0.1, 1.0], "rates": [2, 0]}}, "rate 2"),
        ({**body, "sigmas": [1.0, "x", 0.0]}, "sigmas entry 1"),
        ({**body, "codebook": None}, "codebook must be an object"),
    ):
        status, answer = server.request("/adacache/whatif", bad)
        assert status == 400 and named in answer["error"], answer
