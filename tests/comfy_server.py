"""A real, headless ComfyUI server (CPU) with the pack loaded, for tests that talk HTTP.

Shared by every test module through the session fixtures ``server`` and ``object_info`` in
conftest.py, so one test session starts one server. The server is isolated from the
development host's own ``custom_nodes``: ``--disable-all-custom-nodes
--whitelist-custom-nodes`` loads only a temporary ``custom_nodes`` folder (named in an
``--extra-model-paths-config`` YAML) that holds symlinks to this repository (the pack) and to
``tests/e2e_pack`` (a test-only conditioning node, see its docstring). The same YAML points
``diffusion_models`` at a temporary folder holding a tiny random Wan 2.1 checkpoint (``CKPT``)
that "Load Diffusion Model" (UNETLoader) detects as WAN21.
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
from collections.abc import Iterator
from pathlib import Path

import comfy_host
import torch
from safetensors.torch import save_file

ROOT = comfy_host.ROOT
COMFY = comfy_host.COMFY
E2E_PACK = Path(__file__).resolve().parent / "e2e_pack"
PACK_LINK = "adacache_under_test"  # names in the temporary custom_nodes folder
E2E_LINK = "adacache_e2e_pack"
CKPT = "adacache_e2e_tiny_wan.safetensors"
START_TIMEOUT = 180.0
RUN_TIMEOUT = 300.0


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


@contextlib.contextmanager
def running_server(base: Path) -> Iterator[Server]:
    """Starts the server in ``base`` (a fresh temporary folder) and stops it afterwards."""
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
