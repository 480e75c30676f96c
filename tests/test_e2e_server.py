"""End to end: the pack inside a real, headless ComfyUI server (CPU), driven over HTTP.

One server per session (fixture ``server``), isolated from the development host's own
``custom_nodes``: ``--disable-all-custom-nodes --whitelist-custom-nodes`` loads only a temporary
``custom_nodes`` folder (named in an ``--extra-model-paths-config`` YAML) that holds symlinks
to this repository (the pack) and to ``tests/e2e_pack`` (a test-only conditioning node, see its
docstring). The same YAML points ``diffusion_models`` at a temporary folder holding a tiny
random Wan 2.1 checkpoint that "Load Diffusion Model" (UNETLoader) detects as WAN21.

Checked: the three nodes and their tooltips in ``/object_info``; a workflow with AdaCache
(preset fast with MoReg, and a custom codebook) samples and saves latents; the same workflow
queued twice gives bit-identical latents (the second time with the loader and AdaCache Apply
cached by the server); AdaCache's per-run trace reaches the websocket client; an invalid
codebook fails the prompt with an error naming the bad entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import comfy_host
import pytest
import torch
from safetensors.torch import load_file, save_file

ROOT = comfy_host.ROOT
COMFY = comfy_host.COMFY
E2E_PACK = Path(__file__).resolve().parent / "e2e_pack"
PACK_LINK = "adacache_under_test"  # names in the temporary custom_nodes folder
E2E_LINK = "adacache_e2e_pack"
CKPT = "adacache_e2e_tiny_wan.safetensors"
STEPS = 12
START_TIMEOUT = 180.0
RUN_TIMEOUT = 300.0
PACK_NODES = ("AdaCacheApply", "AdaCacheCodebookEditor", "AdaCacheMoRegSettings")
CUSTOM_THRESHOLDS, CUSTOM_RATES = "100, 200", "3, 1"  # every distance -> rate 3


def write_tiny_wan(path: Path, seed: int = 0) -> None:
    """A tiny Wan 2.1 t2v (dim 128, 4 layers) with seeded random weights, as safetensors."""
    comfy_host.boot_host()
    import comfy.ldm.wan.model
    import comfy.ops

    model = comfy.ldm.wan.model.WanModel(
        dim=128, ffn_dim=256, num_heads=1, num_layers=4, operations=comfy.ops.disable_weight_init
    )
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in sorted(model.state_dict().items()):
        scale = 0.02 if value.ndim > 1 else 0.01
        state[key] = (torch.randn(value.shape, generator=generator) * scale).contiguous()
    assert "head.modulation" in state  # what model detection recognises Wan 2.1 by
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial))
    os.replace(partial, path)  # the server never sees a half-written file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path):
        self.base = base
        self.url = ""
        self.log_path = base / "server.log"
        self.output_dir = base / "output"
        self.client_id = uuid.uuid4().hex
        self.process: subprocess.Popen | None = None
        self.ws: WebsocketListener | None = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def request(self, path: str, payload: dict | None = None, timeout: float = 30.0):
        """(HTTP status, decoded JSON body)."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body.decode(errors="replace")

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return self.request("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def run(self, prompt: dict) -> tuple[str, dict]:
        """Queues ``prompt`` and waits for it: (prompt id, its /history entry)."""
        status, body = self.queue(prompt)
        assert status == 200, f"/prompt refused the workflow: {status} {body}"
        prompt_id = body["prompt_id"]
        return prompt_id, self.wait(prompt_id)

    def wait(self, prompt_id: str) -> dict:
        """The /history entry of ``prompt_id`` once it has finished."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            self.check_alive()
            _, history = self.request(f"/history/{prompt_id}")
            entry = (history or {}).get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.25)
        raise AssertionError(f"prompt {prompt_id} did not finish\n{self.log_tail()}")

    def check_alive(self):
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"ComfyUI exited with code {self.process.returncode}\n{self.log_tail()}"
            )


class WebsocketListener:
    """Collects the JSON messages the server sends to our client id, in a background thread."""

    def __init__(self, url: str):
        self.url = url
        self.messages: list[dict] = []
        self.connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    def start(self, timeout: float = 30.0):
        self._thread.start()
        assert self.connected.wait(timeout), f"no websocket connection to {self.url}"

    async def _listen(self):
        import aiohttp

        self._loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            self._ws = ws
            self.connected.set()
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append(json.loads(msg.data))

    def stop(self):
        if self._loop is not None and self._ws is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(10)
        self._thread.join(10)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_e2e")
    srv = Server(base)
    dirs = {name: base / name for name in ("models", "custom_nodes", "input", "user", "temp")}
    dirs["output"] = srv.output_dir
    for d in dirs.values():
        d.mkdir()
    (dirs["models"] / "diffusion_models").mkdir()
    (dirs["custom_nodes"] / PACK_LINK).symlink_to(ROOT, target_is_directory=True)
    (dirs["custom_nodes"] / E2E_LINK).symlink_to(E2E_PACK, target_is_directory=True)
    paths_yaml = base / "extra_model_paths.yaml"
    paths_yaml.write_text(
        "adacache_e2e:\n"
        f"  diffusion_models: {dirs['models'] / 'diffusion_models'}\n"
        f"  custom_nodes: {dirs['custom_nodes']}\n"
    )
    port = free_port()
    srv.url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, str(COMFY / "main.py"),
        "--cpu", "--use-pytorch-cross-attention",
        "--listen", "127.0.0.1", "--port", str(port),
        "--database-url", "sqlite:///:memory:",
        "--output-directory", str(dirs["output"]),
        "--input-directory", str(dirs["input"]),
        "--user-directory", str(dirs["user"]),
        "--temp-directory", str(dirs["temp"]),
        "--extra-model-paths-config", str(paths_yaml),
        "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_LINK, E2E_LINK,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # the server must not see the pack root (nodes/ shadowing)
    with open(srv.log_path, "wb") as log:
        srv.process = subprocess.Popen(
            cmd, cwd=base, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    listener = None
    try:
        # Written while the server boots; it lists diffusion_models per request, not at start.
        write_tiny_wan(dirs["models"] / "diffusion_models" / CKPT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            srv.check_alive()
            with contextlib.suppress(OSError):
                if srv.request("/queue", timeout=5)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"ComfyUI did not come up in {START_TIMEOUT:.0f} s\n"
                                     f"{srv.log_tail()}")
            time.sleep(0.5)
        listener = WebsocketListener(f"ws://127.0.0.1:{port}/ws?clientId={srv.client_id}")
        listener.start()
        srv.ws = listener
        yield srv
    finally:
        if listener is not None:
            listener.stop()
        srv.process.terminate()
        try:
            srv.process.wait(30)
        except subprocess.TimeoutExpired:
            srv.process.kill()
            srv.process.wait(30)


@pytest.fixture(scope="session")
def object_info(server):
    status, info = server.request("/object_info", timeout=120)
    assert status == 200
    return info


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
    """Two AdaCache branches: preset fast + MoReg (codebook connected, unused), and custom."""
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
        **sampling_branch(object_info, apply_id="10", preset="fast", codebook="5", moreg="6",
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
