"""AdaCache for ComfyUI: adaptive caching (and MoReg) for video diffusion transformers."""

WEB_DIRECTORY = "./web"

try:
    import comfy  # noqa: F401  (registration only inside a ComfyUI host)
except ImportError:
    pass
else:
    from .nodes.adacache_nodes import comfy_entrypoint  # noqa: F401
    from .nodes.demo_nodes import register_demo_model

    register_demo_model()  # the demo model, only with ADACACHE_DEMO=1 (make demo, tests)

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
