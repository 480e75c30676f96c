"""The pack's own ComfyUI socket types, shared by the nodes that produce and consume them."""

from comfy_api.latest import io

# a Codebook (thresholds -> rates) or a CalibratedPlan: both go to Apply's one 'codebook' input
# (the type name stays what saved workflows link by)
Codebook_IO = io.Custom("ADACACHE_CODEBOOK")
MoReg_IO = io.Custom("ADACACHE_MOREG")  # MoRegSettings
