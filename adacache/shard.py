"""One sampling run split over processes: sequence parallel (Ulysses / ring) and CFG parallel.

An engine (xDiT / xfuser, as Raylight runs it) gives every rank a shard of the token sequence
and/or one of the conds. AdaCache then decides once for the whole run, never per rank:

- the distance of a compute step: each rank sums over its shard, one all-reduce adds the sums
  of every stream of the call;
- MoReg's motion (and a calibration's samples): the metric residual gathered over the
  sequence, padding excluded, trimmed to the true length (one gather for all streams);
- the step's distances over the conds: gathered over the CFG ranks, averaged as one process
  averages its streams;
- "this call must compute" (stale stream, missing cache, model patches, a rank's own
  schedule): agreed before every model call and before every reuse; any rank wants compute,
  every rank computes.

Padding rule (xDiT's): the sequence of L tokens is padded at its end to a multiple of the
sequence ranks, and rank r holds tokens [r * S, (r + 1) * S) with S = ceil(L / ranks).
``SINGLE`` (a world of 1) is the default and changes nothing. Pure torch.distributed; an engine
adapter sets a ``ShardContext`` in ``transformer_options[SHARD_OPTION]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .metrics import _EPS, METRICS, sample_rows

SHARD_OPTION = "adacache_shard"  # transformer_options key an engine adapter sets
ENGINES = ("xdit",)  # xDiT / xfuser: Ulysses and ring sequence parallel, CFG parallel
COMPUTES_ELSEWHERE = "another rank computes"  # why a call this rank would reuse computes


class ShardError(RuntimeError):
    pass


@dataclass(frozen=True, eq=False)
class ShardContext:
    """This rank's place in a split run and the process groups that connect it.

    ``world_group``: every rank of this one run (the compute agreement); ``seq_group``: the
    ranks sharing one sequence; ``cfg_group``: the ranks holding the other conds. These carry
    small CPU tensors (gloo, or xfuser's cpu groups); ``gather_group`` gathers the metric
    residual on the compute device (default ``seq_group``)."""

    engine: str = "xdit"
    seq_rank: int = 0
    seq_size: int = 1
    cfg_rank: int = 0
    cfg_size: int = 1
    pipeline_size: int = 1  # PipeFusion's degree
    data_parallel_size: int = 1
    world_group: object = None
    seq_group: object = None
    cfg_group: object = None
    gather_group: object = None

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ShardError(
                f"AdaCache cannot run split over GPUs on engine {self.engine!r}: it runs on "
                "xDiT/xfuser sequence parallelism (Ulysses, ring) and CFG parallelism "
                "(Raylight) and on ComfyUI's MultiGPU work units"
            )
        if self.pipeline_size > 1:
            raise ShardError(
                f"AdaCache does not support PipeFusion (pipeline degree {self.pipeline_size}): "
                "it splits the block stack over ranks and steps, so no rank sees the stack "
                "output a cached step reuses; use Ulysses or ring sequence parallelism"
            )
        if self.data_parallel_size > 1:
            raise ShardError(
                f"AdaCache does not support data parallelism (degree "
                f"{self.data_parallel_size}): its ranks run different samples"
            )
        for name, rank, size in (("sequence", self.seq_rank, self.seq_size),
                                 ("CFG", self.cfg_rank, self.cfg_size)):
            if not 0 <= rank < size:
                raise ShardError(f"{name} rank {rank} is outside its {size} ranks")

    def __deepcopy__(self, memo):  # travels in model_options, which clones deep-copy
        return self

    @property
    def active(self) -> bool:
        return self.seq_size * self.cfg_size > 1

    @property
    def splits_sequence(self) -> bool:
        return self.seq_size > 1

    # -- the run's streams and tokens -------------------------------------------------------
    def check_family(self, family) -> None:
        """A split run needs the block stack (blocks mode) and the video tokens alone in the
        hidden state, so that the true sequence length follows from the latent."""
        if not self.active:
            return
        if family.mode != "blocks" or (self.splits_sequence and (
            family.joined or family.video_tokens != "tail" or len(family.stream_keys) != 1
        )):
            raise ShardError(
                f"AdaCache runs split over GPUs only on block-stack models whose hidden state "
                f"is the video tokens (Wan); {family.name} is not supported split"
            )

    def local_streams(self, keys: list) -> list:
        """The streams this rank computes: under CFG parallel its own cond, chunked along the
        batch as the engine chunks it (only a batch of exactly one entry per CFG rank)."""
        if self.cfg_size == 1 or len(keys) != self.cfg_size:
            return list(keys)
        return [keys[self.cfg_rank]]

    def sequence_length(self, family, latent_shape, tail_tokens: int, shard_tokens: int) -> int:
        """The true (unpadded) sequence length, checked against the padding rule."""
        pt, ph, pw = family.patch_size
        dims = latent_shape[-3:]
        length = math.prod(-(-d // p) for d, p in zip(dims, (pt, ph, pw), strict=True))
        length += tail_tokens
        if -(-length // self.seq_size) < shard_tokens:
            raise ShardError(
                f"the sequence split over {self.seq_size} ranks holds more tokens than the "
                f"video's {length} ({shard_tokens} a rank): tokens besides the video in the "
                f"hidden state (such as {family.name}'s reference-image tokens) are not "
                "supported split over GPUs; run this input on one GPU, or without them"
            )
        if -(-length // self.seq_size) != shard_tokens:
            raise ShardError(
                f"a shard of {shard_tokens} tokens does not fit {length} tokens split over "
                f"{self.seq_size} ranks (padded at the end to a multiple of the ranks): the "
                "engine split the sequence in a way AdaCache does not know"
            )
        return length

    def _bounds(self, length: int) -> tuple[int, int]:
        """(first token, real tokens) of this rank's shard."""
        chunk = -(-length // self.seq_size)
        start = self.seq_rank * chunk
        return start, max(min(length - start, chunk), 0)

    # -- collectives -------------------------------------------------------------------------
    def agree(self, want: bool) -> bool:
        """True on every rank if any rank wants it (one all-reduce over the run)."""
        if not self.active:
            return want
        flag = torch.tensor([int(want)], dtype=torch.int32)
        torch.distributed.all_reduce(flag, torch.distributed.ReduceOp.MAX, group=self.world_group)
        return bool(flag.item())

    def combine(self, measures: list) -> list:
        """Every CFG rank's measures of a step, in rank order (the streams of one process)."""
        if self.cfg_size == 1:
            return measures
        out = [None] * self.cfg_size
        torch.distributed.all_gather_object(out, list(measures), group=self.cfg_group)
        return [m for part in out for m in part]

    def gather_sequence(self, x: torch.Tensor, length: int) -> torch.Tensor:
        """``x`` ``[B, S, D]`` gathered over the sequence ranks, trimmed to ``length``."""
        parts = [torch.empty_like(x) for _ in range(self.seq_size)]
        torch.distributed.all_gather(parts, x.contiguous(),
                                     group=self.gather_group or self.seq_group)
        return torch.cat(parts, dim=1)[:, :length]

    def metric_sample(self, residual: torch.Tensor, length: int) -> torch.Tensor:
        """The rows of this shard that ``metrics.metric_sample`` picks from the whole sequence
        (the same tokens one process measures); padding is never picked."""
        x = residual.detach()
        x = x.reshape(-1, *x.shape[-2:])  # [B, S, D]
        start, real = self._bounds(length)
        batch, n = x.shape[0], x.shape[0] * length
        index = sample_rows(n, x.device)
        index = torch.arange(n, device=x.device) if index is None else index
        token = index % length
        keep = (token >= start) & (token < start + real)
        local = (index // length) * real + token - start
        return x[:, :real].reshape(batch * real, -1).index_select(0, local[keep]).contiguous()

    def whole_sequence(self, residuals: dict, first: int, family, latent_shape,
                       tail_tokens: int, calibrating: bool, moreg: bool) -> tuple[int, dict]:
        """The true sequence length and the metric residuals of a call (block -> [B, S, D]
        on this shard, every stream of the call) that must be seen whole, gathered over the
        sequence ranks, one all_gather per block for all streams: every block for a
        calibration (it records whole samples), the first for MoReg (frames), else none."""
        length = self.sequence_length(family, latent_shape, tail_tokens,
                                      residuals[first].shape[-2])
        wanted = list(residuals) if calibrating else [first] if moreg and family.is_video else []
        return length, {p: self.gather_sequence(residuals[p], length) for p in wanted}

    def distances(self, pairs: list[tuple[dict, dict]], metric: str) -> list[dict]:
        """Per stream ``(current, previous)`` samples (this shard's rows), per metric block,
        the change of the whole sequence's sample: the sums each rank holds for every stream
        of a call, added by one all-reduce."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if not pairs:
            return []
        keys = [sorted(current) for current, _ in pairs]
        sums = torch.stack([_sums(current[p], previous[p])
                            for (current, previous), blocks in zip(pairs, keys, strict=True)
                            for p in blocks]).cpu()
        torch.distributed.all_reduce(sums, group=self.seq_group)
        out, row = [], 0
        for blocks in keys:
            out.append({p: _ratio(sums[row + i], metric) for i, p in enumerate(blocks)})
            row += len(blocks)
        return out


SINGLE = ShardContext()


def _sums(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """What every metric adds over shards: L1 change and norm, squares, dot product."""
    a = current.detach().float().flatten()
    b = previous.detach().to(a.device).float().flatten()
    d = a - b
    return torch.stack([d.abs().sum(), b.abs().sum(), (d * d).sum(), (b * b).sum(),
                        (a * b).sum(), (a * a).sum()])


def _ratio(s: torch.Tensor, metric: str) -> float:
    if metric == "l1":
        return (s[0] / s[1].clamp_min(_EPS)).item()
    if metric == "l2":
        return (s[2].sqrt() / s[3].sqrt().clamp_min(_EPS)).item()
    return (1.0 - s[4] / (s[5].sqrt() * s[3].sqrt()).clamp_min(_EPS)).item()


def from_xfuser() -> ShardContext:
    """This rank's context from xfuser's parallel state (initialize_model_parallel done)."""
    from xfuser.core.distributed import parallel_state as ps

    sp, cfg = ps.get_sp_group(), ps.get_cfg_group()
    return ShardContext(
        seq_rank=sp.rank_in_group, seq_size=sp.world_size,
        cfg_rank=cfg.rank_in_group, cfg_size=cfg.world_size,
        pipeline_size=ps.get_pipeline_parallel_world_size(),
        data_parallel_size=ps.get_data_parallel_world_size(),
        world_group=ps.get_world_group().cpu_group, seq_group=sp.cpu_group,
        cfg_group=cfg.cpu_group, gather_group=sp.device_group,
    )
