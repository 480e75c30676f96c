"""AdaCache inside a process of an xDiT (xfuser) split run, as Raylight's workers run one.

``apply_in_worker`` is what every worker runs on its own model (Raylight sends such a function
to each actor through its patch path, ``model_function_runner``): the ordinary Apply, plus the
worker's place in the split (``adacache/shard.py``) read from xfuser's parallel state, so
every decision is taken once for the whole run.
"""

from __future__ import annotations

import sys

from ..adacache.config import AdaCacheConfig
from ..adacache.shard import SHARD_OPTION, ShardContext, from_xfuser
from .patch import apply_adacache


def worker_shard() -> ShardContext | None:
    """This process's place in xfuser's split run; None outside one (xfuser not loaded, or
    its model parallel state not set up)."""
    state = sys.modules.get("xfuser.core.distributed.parallel_state")
    if state is None or not state.model_parallel_is_initialized():
        return None
    return from_xfuser()


def apply_in_worker(model, config: AdaCacheConfig, node_id=None):
    """A clone of a worker's ``model`` with AdaCache applied and the worker's shard set."""
    model = apply_adacache(model, config, node_id)
    shard = worker_shard()
    if shard is not None:
        model.model_options["transformer_options"][SHARD_OPTION] = shard
    return model
