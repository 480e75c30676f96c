"""What ComfyUI loads: the pack's node list (the demo nodes only on request) and its entrypoint."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import whatif_route  # noqa: F401  (registers POST /adacache/whatif)
from .adacache_nodes import AdaCacheApply, AdaCacheCodebookEditor, AdaCacheMoRegSettings
from .calibration_nodes import CALIBRATION_NODES
from .demo_nodes import DEMO_NODES, demo_enabled
from .raylight import RAYLIGHT_NODES
from .report import REPORT_NODES

NODES = [AdaCacheApply, AdaCacheCodebookEditor, AdaCacheMoRegSettings, *CALIBRATION_NODES,
         *REPORT_NODES, *RAYLIGHT_NODES]


def node_list() -> list[type[io.ComfyNode]]:
    """The pack's nodes; the AdaCache Demo nodes only when ADACACHE_DEMO=1 asks for them."""
    return [*NODES, *(DEMO_NODES if demo_enabled() else ())]


class AdaCacheExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_list()


async def comfy_entrypoint() -> AdaCacheExtension:
    return AdaCacheExtension()
