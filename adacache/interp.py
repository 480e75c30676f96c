"""Linear interpolation shared by the plan and MoReg."""

from __future__ import annotations

import math


def lerp(values, x: float) -> float:
    """Linear interpolation in a non-empty sequence at fractional index ``x`` (clamped)."""
    x = min(max(x, 0.0), len(values) - 1.0)
    i = min(int(math.floor(x)), len(values) - 1)
    j = min(i + 1, len(values) - 1)
    return values[i] * (1 - (x - i)) + values[j] * (x - i)


def fractional_index(positions, position: float) -> float:
    """Where ``position`` falls in the non-increasing ``positions``, as a fractional index."""
    last = len(positions) - 1
    if last < 1 or position >= positions[0]:
        return 0.0
    if position <= positions[last]:
        return float(last)
    low, high = 0, last  # positions[low] > position >= positions[high]
    while high - low > 1:
        mid = (low + high) // 2
        if positions[mid] > position:
            low = mid
        else:
            high = mid
    span = positions[low] - positions[high]
    return low + ((positions[low] - position) / span if span > 0 else 0.0)
