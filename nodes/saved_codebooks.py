"""Saved codebooks and calibrated plans: files in ``<user dir>/default/adacache/codebooks/
<name>.json``, written by AdaCache Calibrate (a plan) or by hand (a codebook), listed and loaded
by the Codebook Editor, and the ``GET /adacache/codebooks`` route the frontend reads them through.
Each file is loaded as what it is (``adacache.codebook_or_plan``: its ``kind``, or for a file
written before plans had a type of their own, a plan when it has a profile).

Anyone can put files in that folder (ComfyUI's own ``POST /userdata``), so:

- only names that pass ``check_name`` are offered or loaded (no markup in a name);
- no symlink is followed: a symlinked file, temp file or folder is refused with a clear error;
- a file over ``MAX_FILE_BYTES`` is never parsed (the route lists it as skipped, with why);
- a file's identity is its content (``saved_fingerprint`` hashes it), not its mtime and size;
- the route parses off the event loop and keeps parsed files by content digest, so a big or
  slow folder never stalls the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time

from ..adacache import CalibratedPlan, Codebook, CodebookError, codebook_or_plan
from .routes import add_route

log = logging.getLogger("AdaCache")
USE_VALUES_ABOVE = "(use the values above)"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
# A calibrated plan at 1,000 steps is about 0.6 MB (profile 1,000 x 24 gaps, indent 1).
MAX_FILE_BYTES = 4 * 1024 * 1024
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


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


def _name_ok(name: str) -> bool:
    try:
        return check_name(name) == name
    except CodebookError:
        return False


def _checked_dir(create: bool = False) -> str:
    """The codebooks folder, refused when it (or a folder on the way) leads outside the user
    directory through a symlink."""
    import folder_paths

    folder = codebooks_dir()
    if create:
        os.makedirs(folder, exist_ok=True)
    user = os.path.realpath(folder_paths.get_user_directory())
    real = os.path.realpath(folder)
    if os.path.commonpath([user, real]) != user or os.path.islink(folder):
        raise CodebookError(
            f"the saved-codebook folder {folder} is a symlink or leads outside the user "
            f"directory ({real}); AdaCache does not follow symlinks there: make it a plain folder"
        )
    return folder


def _refuse_symlink(path: str, what: str) -> None:
    if os.path.islink(path):
        raise CodebookError(
            f"{what} {path} is a symlink; AdaCache does not follow symlinks in the saved-"
            "codebook folder: remove it"
        )


def save_codebook(name: str, rule: Codebook | CalibratedPlan, **metadata) -> str:
    """Saves a codebook or a calibrated plan under ``name``; returns the file's path."""
    name = check_name(name)
    folder = _checked_dir(create=True)
    path = os.path.join(folder, f"{name}.json")
    data = {
        "name": name,
        **rule.to_dict(),  # kind, thresholds, rates (+ a plan's profile, speed, positions, ...)
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **metadata,
    }
    text = json.dumps(data, indent=1, allow_nan=False)
    _refuse_symlink(path, f"saved codebook {name!r}:")
    tmp = path + ".tmp"
    _refuse_symlink(tmp, f"saved codebook {name!r}: the temporary file")
    if os.path.lexists(tmp):  # a plain leftover of an interrupted save
        os.unlink(tmp)
    try:  # exclusively: never through a file or link that appeared meanwhile
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    except FileExistsError:
        raise CodebookError(
            f"saved codebook {name!r}: the temporary file {tmp} appeared while saving; not "
            "writing through it"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp) and not os.path.islink(tmp):
            os.unlink(tmp)
        raise
    return path


def saved_names() -> list[str]:
    """Names of the ``*.json`` files (no symlinks) whose name passes ``check_name``: no others
    are offered."""
    folder = codebooks_dir()
    try:
        files = os.listdir(folder)
    except OSError:
        return []
    names = (f[:-5] for f in files
             if f.endswith(".json") and not os.path.islink(os.path.join(folder, f)))
    return sorted((n for n in names if _name_ok(n)), key=str.lower)


def _read(name: str) -> tuple[str, bytes]:
    """(path, content) of a saved codebook: never through a symlink, never over the size cap."""
    name = check_name(name)
    path = os.path.join(_checked_dir(), f"{name}.json")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)  # a FIFO must not block
    except OSError:
        if os.path.islink(path):
            _refuse_symlink(path, f"saved codebook {name!r}:")
        raise CodebookError(
            f"saved codebook {name!r} not found (looked for {path}); pick another in 'saved' "
            f"or '{USE_VALUES_ABOVE}'"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CodebookError(f"saved codebook {name!r} ({path}) is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise CodebookError(
                f"saved codebook {name!r} ({path}) is {st.st_size / 2**20:.1f} MB, over the "
                f"{MAX_FILE_BYTES // 2**20} MB a codebook file may have; not read"
            )
        content = f.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise CodebookError(f"saved codebook {name!r} ({path}) grew over the size limit")
    return path, content


def _parse(name: str, path: str, content: bytes) -> tuple[Codebook | CalibratedPlan, dict]:
    try:
        data = json.loads(content.decode("utf-8"))
        if not isinstance(data, dict) or "thresholds" not in data or "rates" not in data:
            raise CodebookError('codebook JSON must be an object with "thresholds" and "rates"')
        rule = codebook_or_plan(data)
    except RecursionError:
        raise CodebookError(
            f"saved codebook {name!r} ({path}): nested too deeply to be a codebook"
        ) from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # JSON, UTF-8, entries
        raise CodebookError(f"saved codebook {name!r} ({path}): {e}") from None
    return rule, data


def load_saved(name: str) -> tuple[Codebook | CalibratedPlan, dict]:
    """(codebook or calibrated plan, the file's data) of a saved file; a clear error if missing
    or invalid."""
    path, content = _read(name)
    return _parse(check_name(name), path, content)


def saved_fingerprint(name: str) -> str:
    """Changes when the content of a saved codebook's file does (ComfyUI re-runs the editor
    then), whatever its mtime and size."""
    try:
        _, content = _read(name)
    except CodebookError as e:
        return f"{name}:unreadable:{e}"
    return f"{name}:{hashlib.sha256(content).hexdigest()}"


# content digest -> the route's entry for it (parsed once; bounded)
_PARSED: dict[str, dict] = {}
_PARSED_MAX = 256
_PARSED_LOCK = threading.Lock()


def _entry(name: str) -> dict:
    path, content = _read(name)
    digest = hashlib.sha256(content).hexdigest()
    with _PARSED_LOCK:
        cached = _PARSED.get(digest)
    if cached is not None:
        return {**cached, "name": name}
    rule, data = _parse(name, path, content)
    plan = rule if isinstance(rule, CalibratedPlan) else None
    codebook = plan.codebook if plan else rule
    entry = {
        "name": name,
        "kind": rule.KIND,  # "codebook" or "calibrated plan"
        "thresholds": list(codebook.thresholds),  # of a plan: its plain codebook (not used)
        "rates": list(codebook.rates),
        "speed": plan.speed if plan else None,
        "created": data.get("created"),
        "n_steps": data.get("n_steps"),
    }
    with _PARSED_LOCK:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[digest] = entry
    return entry


def scan_codebooks() -> tuple[list[dict], list[dict]]:
    """(usable codebooks and plans, skipped files with the reason) of the codebooks folder."""
    out, skipped = [], []
    try:
        files = sorted(os.listdir(codebooks_dir()), key=str.lower)
    except OSError:
        return out, skipped
    for file in files:
        if not file.endswith(".json"):
            continue
        name = file[:-5]
        if not _name_ok(name):
            shown = re.sub(r"[^A-Za-z0-9 _.\-]", "?", file)  # never markup, even escaped
            skipped.append({"file": shown, "reason": "not a usable codebook name"})
            continue
        try:
            out.append(_entry(name))
        except Exception as e:  # one broken file must not hide the others
            skipped.append({"name": name, "reason": str(e)})
    return out, skipped


def list_codebooks() -> list[dict]:
    return scan_codebooks()[0]


async def _codebooks_route(request):
    """``GET /adacache/codebooks``: the saved codebooks and plans, and the files skipped."""
    from aiohttp import web

    # file reads and parsing in a worker thread: the event loop keeps serving
    codebooks, skipped = await asyncio.get_running_loop().run_in_executor(None, scan_codebooks)
    return web.json_response({"codebooks": codebooks, "skipped": skipped})


add_route("GET", "/adacache/codebooks", _codebooks_route)
