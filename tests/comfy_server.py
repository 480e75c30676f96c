"""A real, headless ComfyUI server (CPU) with the pack loaded, for tests that talk HTTP.

Shared by every test module through the session fixtures ``server`` and ``object_info`` in
conftest.py, so one test session starts one server. The launcher is the demo's
(``scripts/headless_comfy.py``: isolated ``custom_nodes``, temporary folders); the tests add
``tests/e2e_pack`` (a test-only conditioning node, see its docstring), a ``diffusion_models``
folder holding a tiny random Wan 2.1 checkpoint (``CKPT``) that "Load Diffusion Model"
(UNETLoader) detects as WAN21, and a websocket listener for the messages sent to the client.
The session's server runs with ADACACHE_DEMO=1 (the demo nodes and model registered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import comfy_host
import torch
from safetensors.torch import save_file

ROOT = comfy_host.ROOT
sys.path.insert(0, str(ROOT / "scripts"))
from headless_comfy import HeadlessComfy  # noqa: E402

E2E_PACK = Path(__file__).resolve().parent / "e2e_pack"
PACK_LINK = "adacache_under_test"  # names in the temporary custom_nodes folder
E2E_LINK = "adacache_e2e_pack"
CKPT = "adacache_e2e_tiny_wan.safetensors"
START_TIMEOUT = 180.0


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
def running_server(base: Path, demo: bool = True) -> Iterator[HeadlessComfy]:
    """Starts the server in ``base`` (a fresh temporary folder) and stops it afterwards.

    ``demo``: with the AdaCache Demo nodes and the demo model (ADACACHE_DEMO=1), which the
    session's tests of the demo workflow need; ``False`` is a user's ComfyUI.
    """
    models = base / "models" / "diffusion_models"
    models.mkdir(parents=True)
    srv = HeadlessComfy(
        base,
        custom_nodes={PACK_LINK: ROOT, E2E_LINK: E2E_PACK},
        model_dirs={"diffusion_models": models},
        demo=demo,
    ).start()
    listener = None
    try:
        # Written while the server boots; it lists diffusion_models per request, not at start.
        write_tiny_wan(models / CKPT)
        srv.wait_ready(START_TIMEOUT)
        listener = WebsocketListener(f"ws://127.0.0.1:{srv.port}/ws?clientId={srv.client_id}")
        listener.start()
        srv.ws = listener
        yield srv
    finally:
        if listener is not None:
            listener.stop()
        srv.stop()
