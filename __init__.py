"""AdaCache for ComfyUI: adaptive caching (and MoReg) for video diffusion transformers."""

WEB_DIRECTORY = "./web"

try:
    import comfy  # noqa: F401  (registration only inside a ComfyUI host)
except ImportError:
    comfy = None

# Registration needs the pack imported as a package (ComfyUI: custom_nodes/<folder>); pytest may
# load this file as a plain module from a checkout whose folder name is not an identifier.
if comfy is not None and __package__:
    from .nodes.demo_nodes import register_demo_model
    from .nodes.extension import comfy_entrypoint  # noqa: F401

    register_demo_model()  # the demo model, only with ADACACHE_DEMO=1 (make demo, tests)

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
