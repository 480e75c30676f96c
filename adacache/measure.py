"""Measuring a run's compute steps: per stream, the metric samples of its metric-block
residuals, their change since the stream's last compute step (per step) and, for MoReg and
calibration, the motion of the video in the first metric block's residual. What the schedule
then makes of a step's measures is ``CacheSchedule.measure_all``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .cache_store import chunks
from .families import WHOLE, Family
from .metrics import metric_sample, motion_score, relative_distance
from .moreg import MoRegSettings
from .shard import ShardContext


class Pending(NamedTuple):
    """One stream to measure at a compute step: its samples then and now, the gap between,
    and the full metric residual now (for motion)."""

    previous: dict[int, torch.Tensor]
    current: dict[int, torch.Tensor]
    gap: int
    residual: torch.Tensor


class Measurer:
    def __init__(
        self, family: Family, metric: str, metric_positions: tuple[int, ...],
        shard: ShardContext, calibrating: bool, moreg: MoRegSettings | None,
        warn: Callable[[str], None],
    ):
        """``moreg``: the run's MoReg (None or disabled: no motion term); ``warn``: says a
        note once in the run's summary."""
        self.family, self.metric, self.positions = family, metric, metric_positions
        self.shard, self.calibrating, self.warn = shard, calibrating, warn
        self.moreg = moreg is not None and moreg.enabled
        self.strides = tuple(moreg.strides) if moreg is not None else (1,)

    def measure_call(self, streams: list, residuals: dict, step: int, latent_shape,
                     img_tokens, tail_tokens: int, recording=None
                     ) -> list[tuple[float, int, float | None]]:
        """One compute call's streams (``(StreamKey, StreamCache)``, in batch order) and its
        metric residuals (block -> the call's batch): each stream's samples are kept for its
        next compute step (and recorded when calibrating); returns the measures of the streams
        that have earlier samples to compare with."""
        due = [(i, key, stream) for i, (key, stream) in enumerate(streams)
               if stream.metric_step != step]  # later evaluations refresh only the residual
        if not residuals or not due:
            return []
        keys = [key for key, _ in streams]
        # metric samples stay on the compute device: distances and motion run there
        local = {p: chunks(r.detach(), keys) for p, r in residuals.items()}
        first = self.positions[0]
        if self.shard.splits_sequence:  # this shard's part of the whole sequence's samples
            length, whole = self.shard.whole_sequence(
                residuals, first, self.family, latent_shape, tail_tokens, self.calibrating,
                self.moreg)
            whole = {p: chunks(r, keys) for p, r in whole.items()}
        pending = []
        for i, stream_key, stream in due:
            if not self.shard.splits_sequence:
                channels_last = self.family.mode != WHOLE
                current = {p: metric_sample(m[i], channels_last) for p, m in local.items()}
                residual = local[first][i]
            else:
                current = ({p: metric_sample(m[i]) for p, m in whole.items()}
                           if self.calibrating else
                           {p: self.shard.metric_sample(m[i], length) for p, m in local.items()})
                residual = (whole if first in whole else local)[first][i]
            if stream.metric_step is not None and set(stream.metric) == set(current) and all(
                stream.metric[p].shape == current[p].shape for p in current
            ):
                pending.append(Pending(stream.metric, current, step - stream.metric_step,
                                       residual))
            stream.metric, stream.metric_step = current, step
            if recording is not None:
                recording.add(stream_key, step, current)
        return self.measure(pending, latent_shape, img_tokens, tail_tokens)

    def measure(self, pending: list[Pending], latent_shape, img_tokens=None, tail_tokens=0
                ) -> list[tuple[float, int, float | None]]:
        """Per pending stream: its change per step, its gap and its motion (or None)."""
        if self.shard.splits_sequence and not self.calibrating:  # one all-reduce (shard.py)
            changes = [list(d.values()) for d in self.shard.distances(
                [(p.current, p.previous) for p in pending], self.metric)]
        else:
            changes = [[relative_distance(p.current[b], p.previous[b], self.metric)
                        for b in p.current] for p in pending]
        return [
            (sum(parts) / (len(p.current) * max(p.gap, 1)), p.gap,
             self._motion(p.residual, latent_shape, img_tokens, tail_tokens))
            for p, parts in zip(pending, changes, strict=True)
        ]

    def _motion(self, residual, latent_shape, img_tokens, tail_tokens) -> float | None:
        if not (self.moreg or self.calibrating) or not self.family.is_video:
            return None
        frames = self.family.frames(residual, latent_shape, img_tokens, tail_tokens)
        if frames is None:
            if self.moreg:
                self.warn(
                    "MoReg: the video has one latent frame (or too few tokens for its "
                    "frames): no motion to measure; its factor stays 1"
                )
            return None
        motion = motion_score(frames, self.strides)
        if motion is None and self.moreg:
            self.warn(
                f"MoReg: every frame stride {list(self.strides)} is as long as the video "
                f"({frames.shape[1]} latent frames) or longer: no motion to measure; "
                "its factor stays 1"
            )
        return motion
