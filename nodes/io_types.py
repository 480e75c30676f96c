"""The pack's own ComfyUI socket types, shared by the nodes that produce and consume them."""

from comfy_api.latest import io

Codebook_IO = io.Custom("ADACACHE_CODEBOOK")  # a Codebook (thresholds -> rates), maybe a plan
MoReg_IO = io.Custom("ADACACHE_MOREG")  # MoRegSettings
