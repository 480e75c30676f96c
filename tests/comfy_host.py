"""Test helpers: the real ComfyUI 0.3.75 host in-process, and tiny Wan checkpoints.

Imported by conftest.py. Puts the host (never the pack root) on sys.path and imports the pack
as the package ``comfyui_adacache``, the way ComfyUI imports it from custom_nodes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMFY = ROOT / ".host" / "ComfyUI"
PACK = "comfyui_adacache"


def boot_host():
    if str(COMFY) not in sys.path:
        sys.path.insert(0, str(COMFY))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    comfy.cli_args.args.use_pytorch_cross_attention = True
    import comfy.model_management  # noqa: F401


def import_pack():
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(
        PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module
