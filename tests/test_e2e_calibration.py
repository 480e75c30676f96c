"""End to end through the real server: calibrate -> saved codebook -> route -> Codebook Editor
by name -> AdaCache Apply -> AdaCache Report; NaN and literal inputs refused with clear errors.

Uses the session's server (conftest.py) and the tiny random Wan of comfy_server.
"""

from __future__ import annotations

import json

from test_e2e_server import defaults, shared_nodes

STEPS = 12
NAME = "e2e calibrated"


def branch(object_info, *, preset, seed, codebook=None, moreg=None, tail=None) -> dict:
    """AdaCache Apply "30" -> KSampler "31", plus ``tail`` nodes fed by both."""
    apply_inputs = {**defaults(object_info, "AdaCacheApply"), "model": ["1", 0], "preset": preset}
    if codebook:
        apply_inputs["codebook"] = codebook
    if moreg:
        apply_inputs["moreg"] = moreg
    graph = {
        **shared_nodes(),
        "30": {"class_type": "AdaCacheApply", "inputs": apply_inputs},
        "31": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["30", 0], "seed": seed, "steps": STEPS, "cfg": 5.0,
                "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
                "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            },
        },
    }
    graph.update(tail or {})
    return graph


def errors_of(entry: dict) -> list[dict]:
    return [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]


def test_calibrate_save_route_editor_report(server, object_info):
    calibrate = {"33": {"class_type": "AdaCacheCalibrate", "inputs": {
        "model": ["30", 0], "latent": ["31", 0], "speed": 3.0, "moreg": False, "name": NAME,
        "runs": "all recorded"}}}
    payloads = []
    for seed in (1, 2):  # two queued runs accumulate
        _, entry = server.run(branch(object_info, preset="calibrate", seed=seed, tail=calibrate))
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
        payloads.append(entry["outputs"]["33"]["adacache_calibration"][0])
        assert NAME in entry["outputs"]["33"]["text"][0]
    assert [p["runs"] for p in payloads] == [1, 2]
    fitted = payloads[-1]
    assert fitted["n_steps"] == STEPS and fitted["name"] == NAME

    status, body = server.request("/adacache/codebooks")
    assert status == 200
    listed = {c["name"]: c for c in body["codebooks"]}
    assert listed[NAME]["thresholds"] == fitted["thresholds"]
    assert listed[NAME]["rates"] == fitted["rates"]
    assert listed[NAME]["speed"] == 3.0 and listed[NAME]["n_steps"] == STEPS
    assert listed[NAME]["created"]

    status, info = server.request("/object_info/AdaCacheCodebookEditor")
    inputs = info["AdaCacheCodebookEditor"]["input"]
    saved = inputs["optional"]["saved"]
    assert saved[1]["options"][0] == "(use the values above)" and NAME in saved[1]["options"]
    order = info["AdaCacheCodebookEditor"]["input_order"]
    assert order["required"] + order["optional"] == ["thresholds", "rates", "saved"]

    # picked by name (the fields hold other values), connected to Apply with preset fast: the
    # saved codebook is what the run uses, and the report shows it
    tail = {
        "40": {"class_type": "AdaCacheCodebookEditor",
               "inputs": {"thresholds": "0.5, 1", "rates": "9, 1", "saved": NAME}},
        "44": {"class_type": "AdaCacheReport", "inputs": {"model": ["30", 0],
                                                          "latent": ["31", 0]}},
        "45": {"class_type": "SaveImage", "inputs": {"images": ["44", 0],
                                                     "filename_prefix": "e2e/report"}},
    }
    _, entry = server.run(branch(object_info, preset="fast", seed=3, codebook=["40", 0],
                                 tail=tail))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    trace = entry["outputs"]["44"]["adacache_trace"][0]
    values = trace["codebook_values"]  # the saved plan, picked by name in the editor
    assert values["thresholds"] == fitted["thresholds"] and values["rates"] == fitted["rates"]
    assert values["kind"] == "calibrated plan" and values["speed"] == 3.0
    assert trace["steps_reached"] == STEPS
    preview = entry["outputs"]["44"]["images"]
    assert len(preview) == 1 and preview[0]["type"] == "temp"
    saved_png = entry["outputs"]["45"]["images"][0]
    from PIL import Image

    with Image.open(server.output_dir / saved_png["subfolder"] / saved_png["filename"]) as im:
        assert im.size == (1024, 640)


SAVE = {"32": {"class_type": "SaveLatent",
               "inputs": {"samples": ["31", 0], "filename_prefix": "e2e/invalid"}}}


def test_nan_and_literal_inputs_fail_with_clear_errors(server, object_info):
    moreg = {**defaults(object_info, "AdaCacheMoRegSettings"), "norm_a": float("nan")}
    graph = branch(object_info, preset="fast", seed=4, moreg=["6", 0],
                   tail={"6": {"class_type": "AdaCacheMoRegSettings", "inputs": moreg}, **SAVE})
    status, body = server.queue(graph)  # JSON NaN, as a script might send it
    assert status == 200, body
    entry = server.wait(body["prompt_id"])
    errors = errors_of(entry)
    assert [e["node_type"] for e in errors] == ["AdaCacheMoRegSettings"], entry["status"]
    assert "norm_a" in errors[0]["exception_message"]
    assert "finite" in errors[0]["exception_message"]

    graph = branch(object_info, preset="custom", seed=4, codebook="0.1, 1", tail=SAVE)
    status, body = server.queue(graph)
    if status == 400:  # refused by /prompt validation, naming the node
        assert "30" in body["node_errors"], body
    else:
        entry = server.wait(body["prompt_id"])
        errors = errors_of(entry)
        assert [e["node_id"] for e in errors] == ["30"], entry["status"]
        assert "'codebook'" in errors[0]["exception_message"], errors[0]
        assert "Codebook Editor" in errors[0]["exception_message"]
