"""Hardening through the real server (issue 15): node identity in ComfyUI's cache, the
``GET /adacache/codebooks`` route under a big file, saved-file names and symlinks, another
cache on the same model, clear errors for literal and malformed inputs, stale paths (content
fingerprint, a Report fed another sampler's latent, a prompt queued without client_id).

Every graph uses its own node ids (ComfyUI caches by node id and inputs across the session's
prompts). After the bad cases a valid prompt must still give the canary's latent bit for bit.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from test_e2e_server import defaults, saved_latent, shared_nodes, traces_for

STEPS = 12
RATE3 = {"thresholds": [100, 200], "rates": [3, 1]}  # every distance -> rate 3


def errors_of(entry: dict) -> list[dict]:
    return [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]


def branch(object_info, base: int, *, preset="fast", seed=42, model=("1", 0), codebook=None,
           save=True) -> dict:
    """AdaCache Apply ``base`` -> KSampler ``base+1`` (-> SaveLatent ``base+2``)."""
    a, k, s = str(base), str(base + 1), str(base + 2)
    apply_inputs = {**defaults(object_info, "AdaCacheApply"), "model": list(model),
                    "preset": preset}
    if codebook is not None:
        apply_inputs["codebook"] = codebook
    graph = {
        a: {"class_type": "AdaCacheApply", "inputs": apply_inputs},
        k: {"class_type": "KSampler", "inputs": {
            "model": [a, 0], "seed": seed, "steps": STEPS, "cfg": 5.0,
            "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}},
    }
    if save:
        graph[s] = {"class_type": "SaveLatent",
                    "inputs": {"samples": [k, 0], "filename_prefix": f"hardening/{base}"}}
    return graph


def run_ok(server, graph) -> tuple[str, dict]:
    prompt_id, entry = server.run(graph)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    return prompt_id, entry


def run_error(server, graph) -> dict:
    """The one execution error of ``graph`` (queued, then failed while running)."""
    status, body = server.queue(graph)
    assert status == 200, body
    entry = server.wait(body["prompt_id"])
    errors = errors_of(entry)
    assert entry["status"]["status_str"] == "error" and len(errors) == 1, entry["status"]
    return errors[0]


def codebooks(server) -> Path:
    folder = server.base / "user" / "default" / "adacache" / "codebooks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_CANARY_ID = iter(range(9000, 9999, 10))


@pytest.fixture(scope="module")
def canary(server, object_info):
    """check(): a fresh Apply (new node id, so nothing is cached) samples the canary graph; its
    latent must equal the first one bit for bit."""

    def latent():
        base = next(_CANARY_ID)
        _, entry = run_ok(server, {**shared_nodes(), **branch(object_info, base, seed=5)})
        return saved_latent(server, entry, str(base + 2))

    reference = latent()

    def check():
        assert torch.equal(latent(), reference), "a valid prompt changed after a bad case"

    return check


# --- 1: node identity -------------------------------------------------------------------------


def test_identical_apply_nodes_keep_their_own_identity(server, object_info, canary):
    graph = {**shared_nodes(), **branch(object_info, 100), **branch(object_info, 110)}
    prompt_id, entry = run_ok(server, graph)
    traces = traces_for(server, prompt_id)
    assert set(traces) == {"100", "110"}, "an Apply inherited the other's output and node id"
    assert torch.equal(saved_latent(server, entry, "102"), saved_latent(server, entry, "112"))
    # the next prompt: an Apply identical to 100 under another id is its own node too
    graph = {**shared_nodes(), **branch(object_info, 120, seed=43)}
    prompt_id, _ = run_ok(server, graph)
    assert set(traces_for(server, prompt_id)) == {"120"}
    canary()


# --- 2, 3, 4, 7, 9: saved files and the route -------------------------------------------------


def test_codebooks_route_does_not_block_the_server(server, canary):
    folder = codebooks(server)
    big = folder / "big plan.json"
    rows = ",".join(["[" + ",".join(["0.123456"] * 24) + "]"] * 120000)  # about 26 MB
    big.write_text('{"thresholds": [0.1, 1], "rates": [2, 1], "speed": 3.0, "profile": [[],'
                   + rows + "]}")
    assert big.stat().st_size > 25 * 10**6
    try:
        answers = []
        getter = threading.Thread(target=lambda: answers.extend(
            server.request("/adacache/codebooks", timeout=120) for _ in range(3)))
        getter.start()
        slowest = 0.0
        while getter.is_alive():
            t0 = time.monotonic()
            status, _ = server.request("/queue", timeout=30)
            slowest = max(slowest, time.monotonic() - t0)
            assert status == 200
            time.sleep(0.05)
        getter.join()
        assert slowest < 1.0, f"/queue took {slowest:.2f} s while the route read a 25 MB file"
        for status, body in answers:
            assert status == 200
            assert "big plan" not in [c["name"] for c in body["codebooks"]]
            skipped = {s.get("name"): s["reason"] for s in body["skipped"]}
            assert "MB" in skipped["big plan"], skipped
    finally:
        big.unlink()
    canary()


def test_only_usable_names_are_offered(server, canary):
    folder = codebooks(server)
    evil = folder / "<img src=x onerror=alert(1)>.json"
    fine = folder / "plain name.json"
    for path in (evil, fine):
        path.write_text(json.dumps(RATE3))
    try:
        status, info = server.request("/object_info/AdaCacheCodebookEditor")
        assert status == 200
        options = info["AdaCacheCodebookEditor"]["input"]["optional"]["saved"][1]["options"]
        assert "plain name" in options
        assert not [o for o in options if "<" in o or ">" in o], options
        status, body = server.request("/adacache/codebooks")
        names = [c["name"] for c in body["codebooks"]]
        assert "plain name" in names and not [n for n in names if "<" in n]
        assert "<" not in json.dumps(body["skipped"])  # not even echoed
    finally:
        evil.unlink()
        fine.unlink()
    canary()


def editor_branch(object_info, base: int, saved: str, seed: int = 7) -> dict:
    editor = {str(base + 5): {"class_type": "AdaCacheCodebookEditor",
                              "inputs": {"thresholds": "0.5, 1", "rates": "9, 1",
                                         "saved": saved}}}
    return {**shared_nodes(), **editor,
            **branch(object_info, base, preset="custom", seed=seed, codebook=[str(base + 5), 0])}


def test_no_symlink_is_followed_on_load_or_save(server, object_info, canary):
    folder = codebooks(server)
    outside = server.base / "outside.json"
    outside.write_text(json.dumps(RATE3))
    peek = folder / "peek.json"
    peek.symlink_to(outside)
    try:
        status, info = server.request("/object_info/AdaCacheCodebookEditor")
        assert "peek" not in info["AdaCacheCodebookEditor"]["input"]["optional"]["saved"][1][
            "options"]
        _, body = server.request("/adacache/codebooks")
        assert "peek" not in [c["name"] for c in body["codebooks"]]
        assert "symlink" in {s.get("name"): s["reason"] for s in body["skipped"]}["peek"]
        error = run_error(server, editor_branch(object_info, 200, "peek"))
        assert error["node_type"] == "AdaCacheCodebookEditor", error
        assert "symlink" in error["exception_message"] and "peek" in error["exception_message"]
    finally:
        peek.unlink()

    # saving: a pre-created <name>.json.tmp symlink to a file outside the user directory
    target = server.base / "victim.txt"
    target.write_text("untouched")
    tmp = folder / "linked.json.tmp"
    tmp.symlink_to(target)
    calibrate = {"305": {"class_type": "AdaCacheCalibrate", "inputs": {
        "model": ["300", 0], "latent": ["301", 0], "speed": 3.0, "moreg": False,
        "name": "linked", "runs": "latest run only"}}}
    try:
        graph = {**shared_nodes(), **branch(object_info, 300, preset="calibrate", save=False),
                 **calibrate}
        error = run_error(server, graph)
        assert error["node_type"] == "AdaCacheCalibrate", error
        assert "symlink" in error["exception_message"], error
        assert target.read_text() == "untouched"
        assert not (folder / "linked.json").exists()
    finally:
        tmp.unlink()
    canary()


def test_malformed_saved_files_give_clear_errors(server, object_info, canary):
    folder = codebooks(server)
    deep = folder / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    try:
        _, body = server.request("/adacache/codebooks")
        assert "nested too deeply" in {s.get("name"): s["reason"]
                                       for s in body["skipped"]}["deep"]
        error = run_error(server, editor_branch(object_info, 400, "deep"))
        assert error["node_type"] == "AdaCacheCodebookEditor"
        assert error["exception_type"].endswith("CodebookError"), error
        assert "'deep'" in error["exception_message"] and "nested" in error["exception_message"]
    finally:
        deep.unlink()
    canary()


def test_saved_file_changed_in_place_is_not_served_stale(server, object_info, canary):
    path = codebooks(server) / "in place.json"
    path.write_text(json.dumps(RATE3))
    try:
        graph = editor_branch(object_info, 500, "in place")
        prompt_id, _ = run_ok(server, graph)
        assert traces_for(server, prompt_id)["500"]["codebook"] == "{100: 3, 200: 1}"
        st = path.stat()
        path.write_text(json.dumps({"thresholds": [100, 200], "rates": [2, 1]}))  # same size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        prompt_id, _ = run_ok(server, graph)
        assert traces_for(server, prompt_id)["500"]["codebook"] == "{100: 2, 200: 1}"
    finally:
        path.unlink()
    canary()


# --- 5: another cache on the same model -------------------------------------------------------


def native(kind: str, node: str, model: list) -> dict:
    return {node: {"class_type": kind, "inputs": {
        "model": model, "reuse_threshold": 0.2, "start_percent": 0.15, "end_percent": 0.95,
        "verbose": False}}}


def test_native_cache_on_the_same_model_is_refused(server, object_info, canary):
    # EasyCache before AdaCache Apply: Apply refuses, naming both
    graph = {**shared_nodes(), **native("EasyCache", "609", ["1", 0]),
             **branch(object_info, 600, model=("609", 0))}
    error = run_error(server, graph)
    assert error["node_id"] == "600", error
    message = error["exception_message"]
    assert "EasyCache" in message and "AdaCache Apply (node 600)" in message, message
    # LazyCache after AdaCache Apply: the sampler refuses before its first step, naming both
    graph = {**shared_nodes(), **branch(object_info, 610), **native("LazyCache", "619",
                                                                    ["610", 0])}
    graph["611"]["inputs"]["model"] = ["619", 0]
    error = run_error(server, graph)
    assert error["node_type"] == "KSampler", error
    message = error["exception_message"]
    assert "LazyCache" in message and "AdaCache Apply (node 610)" in message, message
    canary()


# --- 7: literal and unknown values on the nodes' inputs ---------------------------------------


def test_literal_and_unknown_inputs_are_named(server, object_info, canary):
    graph = {**shared_nodes(), **branch(object_info, 700)}
    graph["700"]["inputs"]["model"] = 5
    error = run_error(server, graph)
    assert error["node_id"] == "700" and "'model'" in error["exception_message"], error

    def calibrate(**inputs):
        node = {"class_type": "AdaCacheCalibrate", "inputs": {
            "model": ["710", 0], "latent": ["711", 0], "speed": 3.0, "moreg": False,
            "name": "", "runs": "all recorded", **inputs}}
        return {**shared_nodes(), **branch(object_info, 710, preset="calibrate", save=False),
                "715": node}

    for inputs, named in (({"model": "a model"}, "'model'"), ({"latent": 3}, "'latent'"),
                          ({"runs": "every other"}, "'runs'")):
        error = run_error(server, calibrate(**inputs))
        assert error["node_id"] == "715", error
        assert named in error["exception_message"], error
        if named == "'runs'":
            assert "every other" in error["exception_message"]

    report = {"725": {"class_type": "AdaCacheReport",
                      "inputs": {"model": 1.5, "latent": ["721", 0]}}}
    graph = {**shared_nodes(), **branch(object_info, 720, save=False), **report}
    error = run_error(server, graph)
    assert error["node_id"] == "725" and "'model'" in error["exception_message"], error
    canary()


# --- 9: a Report fed another sampler's latent; a prompt without client_id ---------------------


def test_report_of_another_samplers_latent_says_it_has_no_run(server, object_info, canary):
    graph = {**shared_nodes(), **branch(object_info, 800)}
    run_ok(server, graph)  # Apply 800's handle now has a run
    other = {"810": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 99, "steps": STEPS, "cfg": 5.0, "sampler_name": "euler",
        "scheduler": "simple", "denoise": 1.0, "positive": ["2", 0], "negative": ["3", 0],
        "latent_image": ["4", 0]}}}
    tail = {"815": {"class_type": "AdaCacheReport", "inputs": {"model": ["800", 0],
                                                               "latent": ["810", 0]}},
            "816": {"class_type": "AdaCacheReport", "inputs": {"model": ["800", 0],
                                                               "latent": ["801", 0]}}}
    _, entry = run_ok(server, {**graph, **other, **tail})
    shown = entry["outputs"]["815"]["adacache_trace"][0]
    assert shown["trace"] == [], "the Report showed a run that did not produce its latent"
    assert "no run of this model produced this latent" in shown["warnings"][0], shown
    own = entry["outputs"]["816"]["adacache_trace"][0]  # its own sampler's latent: its run
    assert own["steps_reached"] == STEPS and own["trace"]
    canary()


def test_prompt_without_client_id_is_not_broadcast(server, object_info, canary):
    graph = {**shared_nodes(), **branch(object_info, 900, seed=11)}
    status, body = server.request("/prompt", {"prompt": graph})  # no client_id
    assert status == 200, body
    entry = server.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    time.sleep(0.5)  # the trace is sent before the history entry; let the socket catch up
    leaked = [m for m in list(server.ws.messages)
              if str(m.get("type", "")).startswith("adacache.")
              and (m.get("data") or {}).get("prompt_id") == body["prompt_id"]]
    assert leaked == [], f"{len(leaked)} AdaCache messages reached another client"
    canary()


def test_a_latent_is_recognised_through_a_lower_precision_copy():
    from comfyui_adacache.nodes.hooks import latent_fingerprint, same_latent

    x = torch.randn(1, 16, 4, 60, 104, generator=torch.Generator().manual_seed(0))
    own = latent_fingerprint(x)
    for copy in (x.clone(), x.to(torch.bfloat16), x.to(torch.float16)):
        assert same_latent(own, latent_fingerprint(copy))
    near = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert not same_latent(own, latent_fingerprint(near))  # another run's close latent
    assert not same_latent(own, latent_fingerprint(x[:, :, :3]))


def test_packed_audio_video_latents_are_accepted_as_latents():
    from comfy.nested_tensor import NestedTensor
    from comfyui_adacache.nodes.report import check_latent

    nested = NestedTensor([torch.zeros(1, 16, 2, 4, 4), torch.zeros(1, 8, 5, 1)])
    assert check_latent({"samples": nested}, "AdaCache Report") is nested
    with pytest.raises(ValueError, match="AdaCache Report: 'latent' got list"):
        check_latent([1, 2], "AdaCache Report")
