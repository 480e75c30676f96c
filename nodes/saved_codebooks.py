"""Saved codebooks: files in ``<user dir>/default/adacache/codebooks/<name>.json``, written by
AdaCache Calibrate, listed and loaded by the Codebook Editor, and the ``GET /adacache/codebooks``
route the frontend reads them through.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

from ..adacache import Codebook, CodebookError

log = logging.getLogger("AdaCache")
USE_VALUES_ABOVE = "(use the values above)"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


def codebooks_dir() -> str:
    import folder_paths

    return os.path.join(folder_paths.get_user_directory(), "default", "adacache", "codebooks")


def check_name(name: str) -> str:
    name = str(name).strip()
    if not _NAME_OK.match(name) or name.endswith("."):
        raise CodebookError(
            f"codebook name {name!r} is not usable as a file name: use 1-64 letters, digits, "
            "spaces, '-', '_' or '.', starting with a letter or digit"
        )
    return name


def save_codebook(name: str, codebook: Codebook, **metadata) -> str:
    name = check_name(name)
    folder = codebooks_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    data = {
        "name": name,
        **codebook.to_dict(),  # thresholds, rates (+ profile, speed of a calibrated plan)
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **metadata,
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    os.replace(tmp, path)
    return path


def saved_names() -> list[str]:
    try:
        files = os.listdir(codebooks_dir())
    except OSError:
        return []
    return sorted((f[:-5] for f in files if f.endswith(".json")), key=str.lower)


def load_saved(name: str) -> tuple[Codebook, dict]:
    """(codebook, the file's data) of a saved codebook; a clear error if missing or invalid."""
    name = check_name(name)
    path = os.path.join(codebooks_dir(), f"{name}.json")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        raise CodebookError(
            f"saved codebook {name!r} not found (looked for {path}); pick another in 'saved' "
            f"or '{USE_VALUES_ABOVE}'"
        ) from None
    try:
        codebook = Codebook.from_json(text)
    except CodebookError as e:
        raise CodebookError(f"saved codebook {name!r} ({path}): {e}") from None
    return codebook, json.loads(text)


def saved_fingerprint(name: str) -> str:
    """Changes when the file of a saved codebook does (ComfyUI re-runs the editor then)."""
    try:
        st = os.stat(os.path.join(codebooks_dir(), f"{check_name(name)}.json"))
    except (OSError, CodebookError):
        return f"{name}:missing"
    return f"{name}:{st.st_mtime_ns}:{st.st_size}"


def list_codebooks() -> list[dict]:
    out = []
    for name in saved_names():
        try:
            codebook, data = load_saved(name)
        except Exception as e:  # one broken file must not hide the others
            log.warning("AdaCache: skipping saved codebook %r: %s", name, e)
            continue
        out.append({
            "name": name,
            "thresholds": list(codebook.thresholds),
            "rates": list(codebook.rates),
            "speed": data.get("speed"),
            "planned": codebook.planned,
            "created": data.get("created"),
            "n_steps": data.get("n_steps"),
        })
    return out


def register_routes() -> bool:
    """``GET /adacache/codebooks`` on the running server; False when there is none."""
    try:
        from aiohttp import web
        from server import PromptServer

        routes = PromptServer.instance.routes
    except Exception:
        return False
    if any(getattr(route, "path", None) == "/adacache/codebooks" for route in routes):
        return True  # the pack imported twice (two custom_nodes folders): one route only

    @routes.get("/adacache/codebooks")
    async def adacache_codebooks(request):
        return web.json_response({"codebooks": list_codebooks()})

    return True


register_routes()
