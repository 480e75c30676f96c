"""AdaCache Apply (Raylight): AdaCache inside every Ray worker of a Raylight graph.

A Raylight graph carries Ray actors (``RAY_ACTORS``: ``{"workers": [RayWorker, ...]}``), not a
MODEL: each worker holds its own model and Raylight's patch nodes change it by sending a
function to every actor (``RayWorker.model_function_runner``). This node sends one that runs
``xdit.apply_in_worker`` (the ordinary Apply, plus the worker's place in xfuser's split run, so
every decision is taken once for the whole run) through the same settings as AdaCache Apply.
Rank 0's run summary comes back through Raylight's ``model_function_runner_get_values``
(``worker_summary``), for AdaCache Report (Raylight). The live plot: rank 0's LiveTrace puts its
events into a Ray queue (``QueueSender``) that a thread of this process forwards to the browser
(``LiveRelay``); the other ranks run the same schedule and send nothing.

A worker cannot import a ComfyUI custom node by name (ComfyUI loads it from its folder), so the
function sent travels by value and first makes the pack importable in the worker, under the
name it has here, from the same folder (a local Ray cluster: one machine).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
import threading
import time
from pathlib import Path

from comfy_api.latest import io

from .adacache_nodes import CATEGORY, build_config, settings_inputs
from .calibration_nodes import AdaCacheCalibrate, check_runs, fit_runs
from .report import AdaCacheReport, check_latent, report_output

NODE = "AdaCache Apply (Raylight)"
RayActors_IO = io.Custom("RAY_ACTORS")  # Raylight's socket: {"workers": [Ray actor handles]}
PACK = __name__.rsplit(".nodes.", 1)[0]  # the pack's module name in this process
ROOT = str(Path(__file__).resolve().parents[1])
RELAY_IDLE_S = 1800.0  # a relay with no event for this long stops (its run is long over)
RELAY_POLL_S = 1.0
log = logging.getLogger("AdaCache")


def check_actors(ray_actors, node: str = NODE) -> list:
    """The RayWorker actors of a RAY_ACTORS input, or a clear error naming the input."""
    workers = ray_actors.get("workers") if isinstance(ray_actors, dict) else None
    if not workers or not all(hasattr(w, "model_function_runner") for w in workers):
        raise ValueError(
            f"{node}: 'ray_actors' got {type(ray_actors).__name__} {str(ray_actors)[:60]!r}; "
            "connect the RAY_ACTORS output of a Raylight model loader (Load Diffusion Model "
            "(Raylight)) or of another Raylight node"
        )
    return workers


def check_parallel(parallel: dict, node: str = NODE) -> None:
    """Refuses the Raylight setups whose workers do not share one sampling run."""
    if parallel.get("pipefusion_enabled"):
        raise ValueError(
            f"{node}: 'ray_actors' run PipeFusion, which AdaCache does not support (each "
            "worker runs only some blocks); use Ulysses or ring sequence parallelism"
        )
    dp = int(parallel.get("dp_degree") or 1)
    if dp > 1 or not parallel.get("is_xdit"):
        raise ValueError(
            f"{node}: 'ray_actors' run data parallel (degree {dp}): its workers sample "
            "different videos; use xDiT sequence (Ulysses, ring) or CFG parallelism with "
            "data parallel degree 1"
        )


def _import_pack(pack: str, root: str, module: str):
    """In a worker: ``pack.module``, the pack made the package ``pack`` from ``root`` first (its
    root ``__init__``, the node registration, is not run)."""
    import importlib
    import os
    import sys
    import types

    if pack not in sys.modules:
        if not os.path.isfile(os.path.join(root, "nodes", "xdit.py")):
            raise RuntimeError(
                f"AdaCache is not at {root} on this Ray worker's machine: AdaCache Apply "
                "(Raylight) needs Raylight's workers on the machine that runs ComfyUI (a local "
                "Ray cluster)"
            )
        package = types.ModuleType(pack)
        package.__path__ = [root]
        package.__file__ = os.path.join(root, "__init__.py")
        sys.modules[pack] = package
    return importlib.import_module(f"{pack}.{module}")


def _apply_in_worker(model, pack: str, root: str, config: bytes, node_id, sender=None):
    """Runs in a worker (``model_function_runner``): its model with AdaCache applied, its live
    trace sent through ``sender`` (rank 0) or nowhere."""
    import pickle

    nodes = _import_pack(pack, root, "nodes.adacache_nodes")
    xdit = _import_pack(pack, root, "nodes.xdit")
    patched = nodes.patch_model(model, pickle.loads(config), node_id, apply=xdit.apply_in_worker)
    patched.model_options["transformer_options"]["adacache_handle"].live_sender = sender
    return patched


def _summary_in_worker(model, pack: str, root: str, latent):
    """Runs in a worker (``model_function_runner_get_values``): (summary, or None and why)."""
    if "adacache_handle" not in model.model_options.get("transformer_options", {}):
        return None, ("the Raylight workers' models are not patched by AdaCache: place AdaCache "
                      "Apply (Raylight) between Raylight's model loader and its sampler")
    return _import_pack(pack, root, "nodes.report").summary_for(model, latent)


def _recorded_in_worker(model, pack: str, root: str, forget: bool):
    """Runs in a worker (``model_function_runner_get_values``): (its recorded calibration runs
    of this model, the store key), the runs forgotten after if ``forget``."""
    store = _import_pack(pack, root, "nodes.calibration_store").STORE
    key = _import_pack(pack, root, "nodes.run_setup").store_key(model)
    recorded = store.runs(key)
    if forget:
        store.clear(key)
    return recorded, key


def _by_value():
    """The functions above travel by value (see the module doc)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def send_config(worker, config, node_id=None, sender=None):
    """Applies ``config`` in one worker, its live trace sent through ``sender`` (a QueueSender;
    None: nowhere, a worker has no browser); returns the Ray future."""
    _by_value()
    return worker.model_function_runner.remote(
        _apply_in_worker, PACK, ROOT, pickle.dumps(config), node_id, sender)


class QueueSender:
    """In rank 0's worker, LiveTrace's PromptServer: each event goes into the relay's queue
    (one short call to a local actor per sent step). The first failure (the relay gone) turns
    it off; LiveTrace never lets a send fail a run."""

    def __init__(self, queue, prompt_id, client_id):
        self.queue = queue
        self.last_prompt_id, self.client_id = prompt_id, client_id

    def send_sync(self, event, data, client_id=None):
        if self.queue is None:
            return
        try:
            self.queue.put_nowait((event, data))
        except Exception:
            self.queue = None
            raise


def send_all(workers, config, node_id=None, relay=None) -> None:
    """Applies ``config`` in every worker; rank 0's live trace goes through ``relay`` (a
    LiveRelay; None: nowhere), the other ranks send nothing (the same schedule)."""
    import ray

    sender = relay.sender if relay is not None else None
    ray.get([send_config(w, config, node_id, sender if rank == 0 else None)
             for rank, w in enumerate(workers)])


def forward_to_browser(event: str, data: dict, client_id) -> None:
    """One relayed event to this process's PromptServer; nothing without one (never raises)."""
    try:
        from server import PromptServer

        PromptServer.instance.send_sync(event, data, client_id)
    except Exception as e:
        log.debug("AdaCache: could not forward a Raylight live event: %s", e)


class LiveRelay:
    """In the main process: a Ray queue for rank 0's live events and a daemon thread that
    forwards them (``forward(event, data, client_id)``) until ``stop``, RELAY_IDLE_S without an
    event, or the queue or Ray gone. A newer relay of the same node stops the older one."""

    ACTIVE: dict = {}  # node id -> its running relay

    def __init__(self, node_id, prompt_id, client_id, forward=forward_to_browser):
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})  # no worker's CPU slot
        self.sender = QueueSender(self.queue, prompt_id, client_id)
        self.client_id, self.forward = client_id, forward
        self.stopped = threading.Event()
        previous = LiveRelay.ACTIVE.pop(node_id, None)
        if previous is not None:
            previous.stop()
        LiveRelay.ACTIVE[node_id] = self
        self.thread = threading.Thread(target=self._loop, name="adacache-relay", daemon=True)
        self.thread.start()

    @classmethod
    def for_browser(cls, node_id):
        """A relay to the browser that queued the running prompt; None without one."""
        try:
            from server import PromptServer

            server = PromptServer.instance
        except (ImportError, AttributeError):
            return None
        if node_id is None or getattr(server, "client_id", None) is None:
            return None  # LiveTrace would not send either (no client to send to)
        return cls(node_id, getattr(server, "last_prompt_id", None), server.client_id)

    def _loop(self) -> None:
        from ray.util.queue import Empty

        last = time.monotonic()
        while not self.stopped.is_set() and time.monotonic() - last < RELAY_IDLE_S:
            try:
                event, data = self.queue.get(timeout=RELAY_POLL_S)
            except Empty:
                continue
            except Exception as e:  # the queue's actor or Ray gone
                log.debug("AdaCache: Raylight live relay ended: %s", e)
                break
            last = time.monotonic()
            try:
                self.forward(event, data, self.client_id)
            except Exception as e:
                log.debug("AdaCache: could not forward a Raylight live event: %s", e)
        with contextlib.suppress(Exception):  # already gone with Ray
            self.queue.shutdown()

    def stop(self, timeout: float | None = None) -> None:
        """Ends the thread (within RELAY_POLL_S) and the queue; waits ``timeout`` for it."""
        self.stopped.set()
        self.thread.join(timeout)


def _ask(worker, function, *args):
    """The Ray future of ``function(model, PACK, ROOT, *args)`` run in ``worker`` on its model
    (``model_function_runner_get_values``: its return value comes back)."""
    _by_value()
    return worker.model_function_runner_get_values.remote(function, PACK, ROOT, *args)


def worker_summary(worker, latent) -> tuple[dict | None, str | None]:
    """The summary of the worker's run that produced ``latent`` (or None and why)."""
    import ray

    return ray.get(_ask(worker, _summary_in_worker, latent))


class AdaCacheApplyRaylight(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheApplyRaylight",
            display_name=NODE,
            category=CATEGORY,
            description="AdaCache Apply for Raylight graphs: applies AdaCache in every Ray "
            "worker's model (xDiT Ulysses / ring sequence parallel, CFG parallel). Every "
            "compute/reuse decision is taken once for the whole run, so the schedule is the "
            "one a single GPU would run. Place it between Raylight's model loader and sampler.",
            inputs=[
                RayActors_IO.Input("ray_actors", tooltip="Raylight's Ray actors (the "
                                   "RAY_ACTORS output of its model loader or patch nodes)."),
                *settings_inputs(),
            ],
            outputs=[RayActors_IO.Output(display_name="ray_actors", tooltip="The same actors, "
                                         "their models patched, for Raylight's sampler.")],
            hidden=[io.Hidden.unique_id],
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, ray_actors, preset, metric, metric_blocks, start_percent, end_percent,
                verbose, offload_cache=False, codebook=None, moreg=None) -> io.NodeOutput:
        workers = check_actors(ray_actors)
        config = build_config(NODE, preset, metric, metric_blocks, start_percent, end_percent,
                              verbose, offload_cache, codebook, moreg)
        import ray

        check_parallel(ray.get(workers[0].get_parallel_dict.remote()))
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        send_all(workers, config, node_id, LiveRelay.for_browser(node_id))
        return io.NodeOutput(ray_actors)


def worker_recorded(worker, forget: bool = False) -> tuple[list, str | None]:
    """The calibration runs the worker recorded on its model, and the model's store key."""
    import ray

    return ray.get(_ask(worker, _recorded_in_worker, forget))


class AdaCacheCalibrateRaylight(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        schema = AdaCacheCalibrate.define_schema()
        schema.node_id = "AdaCacheCalibrateRaylight"
        schema.display_name = "AdaCache Calibrate (Raylight)"
        schema.description = (
            "AdaCache Calibrate for Raylight graphs: fits a calibrated plan to the calibration "
            "runs rank 0 recorded (AdaCache Apply (Raylight) with preset 'calibrate'; every "
            "rank records the same run). The plan works on Raylight and on one GPU alike."
        )
        schema.inputs[0] = RayActors_IO.Input(
            "ray_actors", tooltip="The RAY_ACTORS output of Raylight's sampler (after AdaCache "
            "Apply (Raylight) with preset 'calibrate').")
        return schema

    @classmethod
    def execute(cls, ray_actors, latent, speed, moreg, name, runs) -> io.NodeOutput:
        node = "AdaCache Calibrate (Raylight)"
        workers = check_actors(ray_actors, node)
        check_latent(latent, node)  # a literal would let it run before sampling
        check_runs(runs, node)
        recorded, key = worker_recorded(workers[0])

        def forget():
            import ray

            ray.get([_ask(w, _recorded_in_worker, True) for w in workers])

        return fit_runs(recorded, speed, moreg, name, runs, None,
                        f"the Raylight workers' model ({key})", forget, node)


class AdaCacheReportRaylight(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        schema = AdaCacheReport.define_schema()
        schema.node_id = "AdaCacheReportRaylight"
        schema.display_name = "AdaCache Report (Raylight)"
        schema.description = ("AdaCache Report for Raylight graphs: rank 0's run (every rank "
                              "runs the same schedule) as an image and a text summary.")
        schema.inputs[0] = RayActors_IO.Input(
            "ray_actors", tooltip="The RAY_ACTORS output of Raylight's sampler (after AdaCache "
            "Apply (Raylight)).")
        return schema

    @classmethod
    def execute(cls, ray_actors, latent) -> io.NodeOutput:
        workers = check_actors(ray_actors, "AdaCache Report (Raylight)")
        check_latent(latent, "AdaCache Report (Raylight)")
        return report_output(*worker_summary(workers[0], latent))


RAYLIGHT_NODES = [AdaCacheApplyRaylight, AdaCacheCalibrateRaylight, AdaCacheReportRaylight]
