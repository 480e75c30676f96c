"""The pack's HTTP routes on the running ComfyUI server, each registered once."""

from __future__ import annotations


def add_route(method: str, path: str, handler) -> bool:
    """Serves ``handler`` at ``method path``; False when there is no server (a test, a
    worker). A route already there is kept: the pack imported twice (two custom_nodes
    folders) registers it once."""
    try:
        from server import PromptServer

        routes = PromptServer.instance.routes
    except Exception:
        return False
    if not any(getattr(route, "path", None) == path for route in routes):
        routes.route(method, path)(handler)
    return True
