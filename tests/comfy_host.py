"""Test helpers: the real ComfyUI host in-process.

The host is the pinned ``.host/ComfyUI`` (0.3.75, installed by ``make setup``) unless
``ADACACHE_COMFYUI`` names another ComfyUI folder (run pytest with that host's python then).
Imported by conftest.py. Puts the host (never the pack root) on sys.path and imports the pack
as the package ``comfyui_adacache``, the way ComfyUI imports it from custom_nodes.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from headless_comfy import COMFY, comfy_version  # noqa: E402  (one host choice for all)

PACK = "comfyui_adacache"
# tier 1: test modules of adacache/ alone, which run without a host (conftest.py collects only
# these when there is none)
PURE_CORE = frozenset({"test_core.py", "test_plan.py", "test_decisions.py", "test_architecture.py"})
VERSION = comfy_version(COMFY)


def boot_host(cpu: bool = True):
    """The host in-process: on CPU (tests), or on its default device (``cpu=False``)."""
    if str(COMFY) not in sys.path:
        sys.path.insert(0, str(COMFY))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    comfy.cli_args.args.use_pytorch_cross_attention = True
    import comfy.model_management  # noqa: F401


def import_pack(register_nodes: bool = True):
    """The pack as the package ``comfyui_adacache``. ``register_nodes=False`` skips its root
    ``__init__`` (node registration imports ``comfy_api.latest``, hence PyAV, which a bare
    benchmark machine may lack); the core and ``nodes.patch`` import all the same."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    if not register_nodes:
        package = types.ModuleType(PACK)
        package.__path__ = [str(ROOT)]
        package.__file__ = str(ROOT / "__init__.py")
        sys.modules[PACK] = package
        return package
    spec = importlib.util.spec_from_file_location(
        PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


def host_class(module: str, name: str):
    """``module.name`` from the host, or a pytest skip naming the class this host lacks."""
    import importlib

    import pytest

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pytest.skip(f"ComfyUI {VERSION} has no {module}.{name}")


def with_host_fields(params_cls, config: dict, **values) -> dict:
    """``config`` plus those of ``values`` that the host's params dataclass has as fields.

    Newer hosts added required fields (FluxParams.txt_ids_dims, ChromaParams.vec_in_dim,
    HunyuanVideoParams.meanflow_sum) that model detection fills when loading a file; a tiny
    model built by hand passes them only where the installed class has them.
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(params_cls)}
    return {**{k: v for k, v in values.items() if k in names}, **config}
