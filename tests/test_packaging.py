"""Installable like other packs: license, registry fields, icon, and no demo in a user's ComfyUI.

The registry rules checked here are the Comfy Registry's pyproject specification (node id:
letters, digits, ``-``, ``_``, ``.``, starting with a letter, no two special characters in a
row, shorter than 100 characters; "ComfyUI" advised against; Icon a URL to a square image of
at most 400x400 px). The demo test starts a second real server, without ADACACHE_DEMO, as a
user's ComfyUI with the pack installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import comfy_host
import comfy_server
import pytest
from PIL import Image

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (the pack's minimum): the same parser as the tomli package
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEMO_NODES = ("AdaCacheDemoScene", "AdaCacheDemoDecode")
DEMO_MODEL = "adacache_demo_wan.safetensors"


def test_license_file_is_the_mit_text_pyproject_points_to():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 AdaCache contributors\n")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert PYPROJECT["project"]["license"] == {"file": "LICENSE"}


def test_registry_name_follows_the_registry_rules():
    name = PYPROJECT["project"]["name"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name) and len(name) < 100, name
    assert not re.search(r"[._-]{2}", name), name
    assert "comfyui" not in name.lower(), name
    assert re.fullmatch(r"\d+\.\d+\.\d+", PYPROJECT["project"]["version"])


def test_registry_fields_are_true():
    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "AdaCache"
    assert comfy["requires-comfyui"].startswith(">=")
    # a URL is written only once the repository exists: then it must be an https URL, and the
    # icon URL must point at the shipped icon file
    repo = PYPROJECT["project"].get("urls", {}).get("Repository")
    assert repo is None or repo.startswith("https://"), repo
    icon = comfy["Icon"]
    assert icon == "" or (repo and icon.startswith("https://") and icon.endswith("/icon.png"))


def test_shipped_icon_is_a_square_png_within_the_registry_limit():
    with Image.open(ROOT / "docs" / "icon.png") as img:
        assert img.format == "PNG"
        assert img.size[0] == img.size[1] <= 400, img.size
        # not a blank square: the name and the step strip are drawn on it
        assert len(img.convert("RGB").getcolors(1 << 16) or ()) > 50


def test_demo_is_opt_in():
    from comfyui_adacache.nodes.demo_nodes import demo_enabled

    assert not demo_enabled({})
    assert not demo_enabled({"ADACACHE_DEMO": "0"})
    assert not demo_enabled({"ADACACHE_DEMO": ""})
    assert demo_enabled({"ADACACHE_DEMO": "1"})
    assert demo_enabled({"ADACACHE_DEMO": "true"})


@pytest.fixture(scope="module")
def user_server(tmp_path_factory):
    """A real ComfyUI with the pack installed and ADACACHE_DEMO unset: a user's ComfyUI."""
    with comfy_server.running_server(tmp_path_factory.mktemp("user_comfy"), demo=False) as srv:
        yield srv


def test_a_users_comfyui_lists_no_demo_node_or_model(user_server):
    status, info = user_server.request("/object_info", timeout=120)
    assert status == 200
    assert "AdaCacheApply" in info and "AdaCacheCalibrate" in info  # the pack is loaded
    assert not [n for n in DEMO_NODES if n in info]
    assert not [k for k, v in info.items() if v.get("category", "").startswith("AdaCache Demo")]
    unets = info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert comfy_server.CKPT in unets  # the user's own model is listed ...
    assert DEMO_MODEL not in unets  # ... the pack's demo model is not
    status, models = user_server.request("/models/diffusion_models")
    assert status == 200 and comfy_server.CKPT in models and DEMO_MODEL not in models


def test_the_demo_server_lists_them(object_info, server):
    """The session's server runs with ADACACHE_DEMO=1, as make demo does."""
    assert all(n in object_info for n in DEMO_NODES)
    assert DEMO_MODEL in object_info["UNETLoader"]["input"]["required"]["unet_name"][0]
    status, models = server.request("/models/diffusion_models")
    assert status == 200 and DEMO_MODEL in models


def test_the_pure_core_tier_passes_in_a_checkout_without_comfyui(tmp_path):
    """A checkout before ``make setup`` (no .host): the core's tests run and pass, the others
    are not collected, and importing the pack's core loads no ``comfy`` module."""
    import os
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name in files:  # the checkout: every tracked file, no .host, no .venv
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k != "ADACACHE_COMFYUI"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-v", "tests"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "only the pure-core tier runs" in run.stdout
    ran = re.findall(r"^tests/(\w+\.py)::.* ([A-Z]+) +\[", run.stdout, re.M)
    assert {module for module, _ in ran} == comfy_host.PURE_CORE
    assert len(ran) >= 40 and {outcome for _, outcome in ran} == {"PASSED"}
    probe = ("import sys; sys.path.insert(0, 'tests'); import comfy_host; "
             "comfy_host.import_pack(); import comfyui_adacache.adacache; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'comfy'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
