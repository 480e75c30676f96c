"""Raylight's real RayWorker actors on CPU processes over gloo, for tests/test_raylight.py.

The graph is Raylight's own: its actor factory (``make_ray_actor_fn``, what Raylight's Ray
Init node calls), its model loader node (``RayUNETLoader``: each worker loads a tiny ComfyUI Wan
from a file and Raylight injects its xDiT sequence / CFG parallelism), AdaCache Apply
(Raylight), and its sampler node (``XFuserKSamplerAdvanced``). Raylight is not on the package
registry: ``ADACACHE_RAYLIGHT`` names a local checkout, else these tests skip.

Shims, only at each Ray worker process's start (Ray's ``worker_process_setup_hook``), none of
which replaces communication or attention code: ComfyUI runs with ``--cpu``; the process
group backend ``nccl`` becomes ``gloo`` (Raylight's workers and xfuser's groups ask for nccl);
the device mesh ``cuda`` becomes ``cpu``; the GPU's compute capability reads (9, 0); and
xfuser's attention module is imported (through Raylight's) while ``torch.cuda.is_available()``
says True (its import guard; without it xFuserLongContextAttention derives from ``object``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
RAYLIGHT = os.environ.get("ADACACHE_RAYLIGHT")
TIMEOUT_S = 480  # one topology: two workers start, load, sample every case (busy CPUs)


def skip_reason(host_version: str) -> str | None:
    """Why these tests cannot run here, or None."""
    if not RAYLIGHT:
        return ("ADACACHE_RAYLIGHT does not name a Raylight checkout (Raylight is not on the "
                "package registry)")
    if not (Path(RAYLIGHT) / "src" / "raylight" / "nodes.py").is_file():
        return f"ADACACHE_RAYLIGHT={RAYLIGHT} is not a Raylight checkout (no src/raylight)"
    for name in ("ray", "xfuser", "yunchang"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (Raylight needs it)"
    if tuple(int(p) for p in host_version.split(".")[:2]) < (0, 33):
        return f"Raylight needs a newer ComfyUI than {host_version} (ADACACHE_COMFYUI, 0.33)"
    return None


def worker_setup() -> None:
    """Every Ray worker process, at its start (see the module doc)."""
    sys.path.insert(0, str(TESTS))
    import comfy_host
    import torch
    import torch.distributed as dist
    import torch.distributed.device_mesh as device_mesh

    torch.set_num_threads(1)
    comfy_host.boot_host()  # ComfyUI --cpu
    init_process_group, new_group = dist.init_process_group, dist.new_group
    init_device_mesh = device_mesh.init_device_mesh

    def gloo(backend):
        return "gloo" if backend in ("nccl", None) else backend

    def init_gloo(backend=None, *args, **kwargs):
        return init_process_group(gloo(backend), *args, **kwargs)

    def new_gloo_group(*args, backend=None, **kwargs):
        return new_group(*args, backend=gloo(backend), **kwargs)

    def cpu_mesh(device_type, *args, **kwargs):
        return init_device_mesh("cpu" if device_type == "cuda" else device_type, *args, **kwargs)

    dist.init_process_group, dist.new_group = init_gloo, new_gloo_group
    device_mesh.init_device_mesh = cpu_mesh
    torch.cuda.get_device_capability = lambda *_: (9, 0)
    available = torch.cuda.is_available
    torch.cuda.is_available = lambda: True  # xfuser's import guard, while it is imported
    try:  # without it, its attention class is a bare object
        import raylight.distributed_modules.attention  # noqa: F401
    finally:
        torch.cuda.is_available = available


def start_ray() -> None:
    """A local Ray for two workers: 2 CPUs, 2 declared GPUs (Raylight asks one per worker)."""
    import ray

    paths = [os.environ.get("PYTHONPATH", ""), str(TESTS), str(Path(RAYLIGHT) / "src")]
    comfy = os.environ.get("ADACACHE_COMFYUI")
    env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p), "MASTER_PORT": _free_port()}
    if comfy:
        env["ADACACHE_COMFYUI"] = comfy
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024**2,
             runtime_env={"env_vars": env, "worker_process_setup_hook": worker_setup})


def stop_ray() -> None:
    import ray

    ray.shutdown()


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def raylight_nodes():
    if str(Path(RAYLIGHT) / "src") not in sys.path:
        sys.path.insert(0, str(Path(RAYLIGHT) / "src"))
    import raylight.nodes

    return raylight.nodes


def parallel_dict(ulysses: int, cfg: int, world: int = 2) -> dict:
    """What Raylight's Ray Init node sets for xDiT with these degrees (no FSDP, no mmap)."""
    return {
        "is_xdit": True, "is_fsdp": False, "sync_ulysses": False, "global_world_size": world,
        "shard_size": world, "use_group_process_group": False, "use_mmap": False,
        "pp_degree": 1, "dp_degree": 1, "clear_vram_after_sampling": False,
        "pipefusion_enabled": False, "attention": "TORCH_MATH", "ulysses_degree": ulysses,
        "ring_degree": 1, "cfg_degree": cfg,
    }


def load_workers(ulysses: int, cfg: int, unet_name: str) -> dict:
    """Raylight's workers for these degrees with the tiny Wan loaded (RAY_ACTORS)."""
    nodes = raylight_nodes()
    from raylight.distributed_worker.ray_worker import make_ray_actor_fn

    make = make_ray_actor_fn(2, parallel_dict(ulysses, cfg))
    (actors,) = nodes.RayUNETLoader().load_ray_unet([make(), make], unet_name, "default")
    return actors


def sample(actors: dict, lat, steps: int = 8, seed: int = 42):
    """Raylight's sampler node on ``actors``: rank 0's sampled latent."""
    from wan_fixtures import conds

    positive, negative = conds()
    latent, _ = raylight_nodes().XFuserKSamplerAdvanced().ray_sample(
        actors, "enable", seed, steps, 5.0, "euler", "simple", positive, negative,
        {"samples": lat}, 0, 10000, "disable")
    return latent["samples"]


def kill(actors: dict, wait_s: float = 60) -> None:
    """Raylight's Ray Kill node, then Ray's kill (its actors' names outlive the first);
    returns once the names are free for new workers."""
    import ray

    raylight_nodes().RayKill().kill_ray(actors, "Kill Actors Only")
    for worker in actors["workers"]:
        ray.kill(worker)
    deadline = time.monotonic() + wait_s
    for rank in range(len(actors["workers"])):
        while time.monotonic() < deadline:
            try:
                ray.get_actor(f"RayWorker:{rank}")
            except ValueError:  # gone
                break
            time.sleep(0.2)


def with_timeout(fn, seconds: float = TIMEOUT_S):
    """``fn()``, or a TimeoutError after ``seconds`` (every Ray actor then killed: no hang)."""
    import ray

    result, error = [], []

    def target():
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller)
            error.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        ray.shutdown()  # ends the workers and the calls waiting on them
        thread.join(60)
        raise TimeoutError(f"the Raylight run did not finish within {seconds} s (a hang)")
    if error:
        raise error[0]
    return result[0]
