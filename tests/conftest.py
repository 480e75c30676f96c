"""Boots the real ComfyUI host in-process (CPU) and imports the pack as ``comfyui_adacache``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfy_host  # noqa: E402

comfy_host.boot_host()
comfy_host.import_pack()

import comfy_server  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"ComfyUI host: {comfy_host.COMFY} (version {comfy_host.VERSION})"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real headless ComfyUI server with the pack, shared by every module of the session."""
    with comfy_server.running_server(tmp_path_factory.mktemp("comfy_e2e")) as srv:
        yield srv


@pytest.fixture(scope="session")
def object_info(server):
    status, info = server.request("/object_info", timeout=120)
    assert status == 200
    return info


def pytest_sessionfinish(session, exitstatus):
    """Free ComfyUI's loaded models while its modules still exist (quiet interpreter exit)."""
    import gc

    import comfy.model_management

    comfy.model_management.unload_all_models()
    gc.collect()
