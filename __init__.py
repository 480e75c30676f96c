"""AdaCache for ComfyUI: adaptive caching (and MoReg) for video diffusion transformers."""

WEB_DIRECTORY = "./web"

try:
    import comfy  # noqa: F401  (registration only inside a ComfyUI host)
except ImportError:
    pass
else:
    import os

    import folder_paths

    folder_paths.add_model_folder_path(
        "diffusion_models", os.path.join(os.path.dirname(__file__), "models", "diffusion_models")
    )
    from .nodes.adacache_nodes import comfy_entrypoint  # noqa: F401

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
