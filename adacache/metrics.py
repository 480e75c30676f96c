"""Distances between residuals and the MoReg motion score (algorithm.md sections 2 and 5)."""

from __future__ import annotations

import torch

METRICS = ("l1", "l2", "cosine")
_EPS = 1e-12


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
