"""Boots the real ComfyUI host in-process (CPU) and imports the pack as ``comfyui_adacache``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfy_host  # noqa: E402

comfy_host.boot_host()
comfy_host.import_pack()
