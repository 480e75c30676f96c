"""Distances between residuals and the MoReg motion score (algorithm.md sections 2 and 5)."""

from __future__ import annotations

import torch

METRICS = ("l1", "l2", "cosine")
_EPS = 1e-12
# The schedule measures a metric residual on every channel and at most this many tokens (or
# latent positions). Calibration and cached runs use the same sample (metric_sample), so what
# a plan was calibrated on is what a run compares with it, at any size.
METRIC_TOKENS = 1024
_ROWS: dict[tuple, torch.Tensor] = {}  # (rows, device) -> the sampled row indices


def metric_sample(residual: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """The part of a metric residual the schedule measures: ``[tokens, channels]`` with every
    channel and at most ``METRIC_TOKENS`` tokens, spread over the whole sequence.

    ``channels_last``: a token tensor ``[..., tokens, channels]`` (blocks mode); otherwise a
    latent ``[1, C, ...]`` / ``[C, ...]`` whose channels are its first non-batch dim (whole
    model mode). Tokens are picked by a fixed seeded draw per length (no stride that could
    alias with the frame/row layout) and kept in the residual's dtype.
    """
    x = residual.detach()
    if channels_last:
        rows = x.reshape(-1, x.shape[-1])
    else:
        x = x[0] if x.ndim >= 4 and x.shape[0] == 1 else x
        rows = x.reshape(x.shape[0], -1).transpose(0, 1)
    index = sample_rows(rows.shape[0], rows.device)
    return rows.contiguous() if index is None else rows.index_select(0, index)


def sample_rows(n: int, device) -> torch.Tensor | None:
    """The sorted indices of the rows ``metric_sample`` keeps of ``n`` (None: all of them)."""
    if n <= METRIC_TOKENS:
        return None
    key = (n, str(device))
    index = _ROWS.get(key)
    if index is None:
        draw = torch.randperm(n, generator=torch.Generator().manual_seed(n))[:METRIC_TOKENS]
        index = _ROWS[key] = draw.sort().values.to(device)
    return index


def relative_distance(current: torch.Tensor, previous: torch.Tensor, metric: str = "l1") -> float:
    """Change of ``current`` against ``previous`` (not yet divided by the step gap).

    l1/l2: ||current - previous|| / ||previous||; cosine: 1 - cos(current, previous).
    Norms are over the whole tensor of the stream, in float32.
    """
    a = current.detach().float().flatten()
    b = previous.detach().to(a.device).float().flatten()
    if metric == "l1":
        return ((a - b).abs().sum() / b.abs().sum().clamp_min(_EPS)).item()
    if metric == "l2":
        return ((a - b).norm() / b.norm().clamp_min(_EPS)).item()
    if metric == "cosine":
        return (1.0 - torch.nn.functional.cosine_similarity(a, b, dim=0, eps=_EPS)).item()
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def motion_score(frames: torch.Tensor, strides=(1,)) -> float | None:
    """Normalised frame difference of a residual laid out as ``[batch, frames, tokens, dim]``.

    m = ||r[i:] - r[:-i]||_1 / (||r[i:]||_1 + ||r[:-i]||_1), averaged over the frame strides
    ``i`` that fit. None when there are fewer than two frames (an image model).
    """
    x = frames.detach().float()
    scores = []
    for stride in strides:
        if stride < 1 or x.shape[1] <= stride:
            continue
        later, earlier = x[:, stride:], x[:, :-stride]
        den = later.abs().sum() + earlier.abs().sum()
        scores.append(((later - earlier).abs().sum() / den.clamp_min(_EPS)).item())
    return sum(scores) / len(scores) if scores else None
