"""Boots the real ComfyUI host in-process (CPU) and imports the pack as ``comfyui_adacache``.

Without a host (a checkout before ``make setup``) only the pure-core tier runs: the core never
imports ComfyUI, so its tests need none.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfy_host  # noqa: E402
import pytest  # noqa: E402

HOST = (comfy_host.COMFY / "main.py").is_file()
if HOST:
    comfy_host.boot_host()
comfy_host.import_pack()


def pytest_ignore_collect(collection_path, config):
    pure = collection_path.name in comfy_host.PURE_CORE
    if not HOST and collection_path.suffix == ".py" and not pure:
        return True
    return None


def pytest_report_header(config):
    if not HOST:
        return f"no ComfyUI host at {comfy_host.COMFY}: only the pure-core tier runs"
    return f"ComfyUI host: {comfy_host.COMFY} (version {comfy_host.VERSION})"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real headless ComfyUI server with the pack, shared by every module of the session."""
    import comfy_server

    with comfy_server.running_server(tmp_path_factory.mktemp("comfy_e2e")) as srv:
        yield srv


@pytest.fixture(scope="session")
def object_info(server):
    status, info = server.request("/object_info", timeout=120)
    assert status == 200
    return info


def pytest_sessionfinish(session, exitstatus):
    """Free ComfyUI's loaded models while its modules still exist (quiet interpreter exit)."""
    if not HOST:
        return
    import gc

    import comfy.model_management

    comfy.model_management.unload_all_models()
    gc.collect()
