"""A real ComfyUI server, headless on CPU, with this pack loaded: used by `make demo` and tests.

The host is ``.host/ComfyUI`` (the pinned host ``make setup`` installs) unless the environment
variable ``ADACACHE_COMFYUI`` names another ComfyUI folder; run with that host's python.

The server is isolated from the development host's own ``custom_nodes``: a fresh ``base``
folder holds its output/input/user/temp folders and a ``custom_nodes`` folder of symlinks
(the pack, and anything else the caller names), loaded alone with ``--disable-all-custom-nodes
--whitelist-custom-nodes`` through an ``--extra-model-paths-config`` YAML, which can also add
model folders.

The pack's demo nodes and demo model are registered only when the server runs with
``ADACACHE_DEMO=1``: ``HeadlessComfy(..., demo=True)`` sets it for the server, ``demo=False``
(the default) removes it, so a server started for a "user's ComfyUI" never inherits it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_ENV = "ADACACHE_COMFYUI"
DEMO_ENV = "ADACACHE_DEMO"  # nodes/demo_nodes.py reads it
PINNED_HOST = ROOT / ".host" / "ComfyUI"


def comfy_dir() -> Path:
    """The ComfyUI folder to run: ``$ADACACHE_COMFYUI`` if set, else the pinned dev host."""
    chosen = os.environ.get(HOST_ENV)
    path = Path(chosen).expanduser().resolve() if chosen else PINNED_HOST
    if chosen and not (path / "main.py").is_file():
        raise RuntimeError(f"{HOST_ENV}={chosen!r} is not a ComfyUI folder (no main.py in it)")
    return path


def comfy_version(comfy: Path) -> str:
    """The host's ``comfyui_version.py`` version, or 'unknown'."""
    version_file = comfy / "comfyui_version.py"
    text = version_file.read_text() if version_file.is_file() else ""
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


COMFY = comfy_dir()
START_TIMEOUT = 240.0
RUN_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HeadlessComfy:
    def __init__(self, base: Path, custom_nodes: dict[str, Path],
                 model_dirs: dict[str, Path] | None = None, log_path: Path | None = None,
                 demo: bool = False):
        """``custom_nodes``: folder name -> package to load; ``model_dirs``: kind -> folder;
        ``demo``: register the AdaCache Demo nodes and the demo model (ADACACHE_DEMO=1)."""
        self.base = base
        self.demo = demo
        self.output_dir = base / "output"
        self.log_path = log_path or base / "server.log"
        self.client_id = uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        dirs = {name: base / name for name in ("input", "user", "temp", "custom_nodes")}
        for d in (*dirs.values(), self.output_dir):
            d.mkdir(parents=True, exist_ok=True)
        for name, target in custom_nodes.items():
            (dirs["custom_nodes"] / name).symlink_to(target, target_is_directory=True)
        paths_yaml = base / "extra_model_paths.yaml"
        entries = {"custom_nodes": dirs["custom_nodes"], **(model_dirs or {})}
        paths_yaml.write_text(
            "adacache:\n" + "".join(f"  {k}: {v}\n" for k, v in entries.items())
        )
        self.command = [
            sys.executable, str(COMFY / "main.py"),
            "--cpu", "--use-pytorch-cross-attention", "--disable-auto-launch",
            "--listen", "127.0.0.1", "--port", str(self.port),
            "--database-url", "sqlite:///:memory:",
            "--output-directory", str(self.output_dir),
            "--input-directory", str(dirs["input"]),
            "--user-directory", str(dirs["user"]),
            "--temp-directory", str(dirs["temp"]),
            "--extra-model-paths-config", str(paths_yaml),
            "--disable-all-custom-nodes", "--whitelist-custom-nodes", *custom_nodes,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> HeadlessComfy:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)  # the server must not see the pack root (nodes/ shadowing)
        env.pop(DEMO_ENV, None)
        if self.demo:
            env[DEMO_ENV] = "1"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.base, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env,
            )
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Seconds until the HTTP API answers."""
        t0 = time.monotonic()
        while True:
            self.check_alive()
            with contextlib.suppress(OSError):
                if self.request("/queue", timeout=5)[0] == 200:
                    return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"ComfyUI did not come up in {timeout:.0f} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"ComfyUI exited with code {self.process.returncode}\n{self.log_tail()}"
            )

    def request(self, path: str, payload=None, timeout: float = 30.0):
        """(HTTP status, decoded JSON body); a POST when ``payload`` is given."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body.decode(errors="replace")

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return self.request("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """The /history entry of ``prompt_id`` once it has finished (success or error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            _, history = self.request(f"/history/{prompt_id}")
            entry = (history or {}).get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.05)
        raise RuntimeError(f"prompt {prompt_id} did not finish\n{self.log_tail()}")

    def run(self, prompt: dict) -> tuple[str, dict]:
        """Queues ``prompt`` and waits for it: (prompt id, its /history entry)."""
        status, body = self.queue(prompt)
        if status != 200:
            raise RuntimeError(f"/prompt refused the workflow: {status} {body}")
        prompt_id = body["prompt_id"]
        return prompt_id, self.wait(prompt_id)
