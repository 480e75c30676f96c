"""Codebooks: ordered (threshold, rate) pairs that turn a distance into a cache rate.

A distance ``c`` selects the first entry with ``c < threshold``; the last entry catches
everything above (its threshold acts as +inf). The rate ``tau`` is the number of steps until
the next compute step (``tau = 1`` computes every step).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


class CodebookError(ValueError):
    """An invalid codebook; the message names the offending entry."""


@dataclass(frozen=True)
class Codebook:
    thresholds: tuple[float, ...]
    rates: tuple[int, ...]

    def __post_init__(self):
        validate(self.thresholds, self.rates)

    def rate_for(self, distance: float) -> int:
        for threshold, rate in zip(self.thresholds[:-1], self.rates[:-1], strict=True):
            if distance < threshold:
                return rate
        return self.rates[-1]

    def to_json(self) -> str:
        return json.dumps({"thresholds": list(self.thresholds), "rates": list(self.rates)})

    @classmethod
    def from_json(cls, text: str) -> Codebook:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CodebookError(f"codebook JSON is unparsable: {e}") from None
        if not isinstance(data, dict) or "thresholds" not in data or "rates" not in data:
            raise CodebookError('codebook JSON must be an object with "thresholds" and "rates"')
        return cls(*_coerce(data["thresholds"], data["rates"]))

    @classmethod
    def from_text(cls, thresholds: str, rates: str) -> Codebook:
        """Parses the Codebook Editor's comma-separated fields."""
        return cls(*_coerce(_split(thresholds, "thresholds"), _split(rates, "rates")))

    @classmethod
    def from_pairs(cls, pairs: dict[float, int] | list[tuple[float, int]]) -> Codebook:
        items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
        return cls(*_coerce([t for t, _ in items], [r for _, r in items]))

    def describe(self) -> str:
        pairs = zip(self.thresholds, self.rates, strict=True)
        return "{" + ", ".join(f"{t:g}: {r}" for t, r in pairs) + "}"


def _split(text: str, field: str) -> list[str]:
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    if parts == [""]:
        return []
    if "" in parts:
        raise CodebookError(f"{field}: entry {parts.index('') + 1} is empty")
    return parts


def _coerce(thresholds, rates) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if not isinstance(thresholds, (list, tuple)) or not isinstance(rates, (list, tuple)):
        raise CodebookError("thresholds and rates must be lists")
    out_t: list[float] = []
    for i, value in enumerate(thresholds):
        try:
            t = float(value)
        except (TypeError, ValueError):
            raise CodebookError(f"threshold {i + 1} ({value!r}) is not a number") from None
        out_t.append(t)
    out_r: list[int] = []
    for i, value in enumerate(rates):
        try:
            r = float(value)
        except (TypeError, ValueError):
            raise CodebookError(f"rate {i + 1} ({value!r}) is not a number") from None
        if isinstance(value, bool) or not r.is_integer() or r < 1:
            raise CodebookError(f"rate {i + 1} ({value!r}) must be an integer >= 1")
        out_r.append(int(r))
    return tuple(out_t), tuple(out_r)


def validate(thresholds, rates) -> None:
    if len(thresholds) == 0:
        raise CodebookError("codebook is empty: give at least one (threshold, rate) entry")
    if len(thresholds) != len(rates):
        raise CodebookError(
            f"codebook has {len(thresholds)} thresholds but {len(rates)} rates; "
            "each threshold needs exactly one rate"
        )
    for i, t in enumerate(thresholds):
        if not isinstance(t, float) or not math.isfinite(t) or t <= 0:
            raise CodebookError(f"threshold {i + 1} ({t!r}) must be a finite number > 0")
        if i and t <= thresholds[i - 1]:
            raise CodebookError(
                f"threshold {i + 1} ({t:g}) is not greater than threshold {i} "
                f"({thresholds[i - 1]:g}); thresholds must be strictly increasing"
            )
    for i, r in enumerate(rates):
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise CodebookError(f"rate {i + 1} ({r!r}) must be an integer >= 1")


# --- presets ---------------------------------------------------------------------------------
# The paper's codebooks are anchors at 30 and 100 steps (supplement A.2, Table 3f). A preset
# for N steps interpolates each entry geometrically in log(N) between the two anchors:
#     alpha = ln(N / 30) / ln(100 / 30)
#     threshold_i(N) = t30_i ** (1 - alpha) * t100_i ** alpha
#     rate_i(N)      = max(1, round(r30_i ** (1 - alpha) * r100_i ** alpha))
# so N = 30 and N = 100 give the paper's codebooks exactly; other N extrapolate smoothly
# (per-step distances shrink and cache rates grow as steps get denser). N is clamped to
# [MIN_STEPS, MAX_STEPS]. The last threshold only catches the rest: 1.0, or twice the one
# before it when few steps push the thresholds above 1.
ANCHOR_STEPS = (30, 100)
MIN_STEPS, MAX_STEPS = 4, 1000
_T30 = (0.08, 0.16, 0.24, 0.32, 0.40, 1.00)
_T100 = (0.03, 0.05, 0.07, 0.09, 0.11, 1.00)
PRESET_RATES = {
    # paper: fast 30 / fast 100
    "fast": ((6, 5, 4, 3, 2, 1), (12, 10, 8, 6, 4, 3)),
    # ours at 30 (between fast and slow); Table 3f {8, 6, 4, 2, 1} at 100, last rate repeated
    "medium": ((4, 3, 2, 2, 1, 1), (8, 6, 4, 2, 1, 1)),
    # paper: slow 30 {0.08: 3, 0.16: 2, 0.24: 1, ...}; Table 3f {2, 1} at 100
    "slow": ((3, 2, 1, 1, 1, 1), (2, 1, 1, 1, 1, 1)),
}
PRESETS = tuple(PRESET_RATES)


def preset_codebook(name: str, steps: float) -> Codebook:
    if name not in PRESET_RATES:
        raise CodebookError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    n = min(max(float(steps), MIN_STEPS), MAX_STEPS)
    alpha = math.log(n / ANCHOR_STEPS[0]) / math.log(ANCHOR_STEPS[1] / ANCHOR_STEPS[0])
    r30, r100 = PRESET_RATES[name]
    thresholds = [a ** (1 - alpha) * b**alpha for a, b in zip(_T30, _T100, strict=True)]
    thresholds = [round(t, 4) for t in thresholds[:-1]]
    thresholds.append(max(1.0, round(2 * thresholds[-1], 4)))  # the catch-all entry
    rates = [max(1, round(a ** (1 - alpha) * b**alpha)) for a, b in zip(r30, r100, strict=True)]
    return Codebook(tuple(thresholds), tuple(rates))


def calibrated_codebook(distances: list[float], rates: tuple[int, ...]) -> Codebook | None:
    """Supplement A.2: split the observed distance range uniformly over the given rates."""
    finite = sorted(d for d in distances if d is not None and math.isfinite(d) and d > 0)
    if len(finite) < 2 or len(rates) < 2 or finite[-1] <= finite[0]:
        return None
    lo, hi = finite[0], finite[-1]
    n = len(rates)
    thresholds = [lo + (hi - lo) * (i + 1) / n for i in range(n - 1)]
    thresholds.append(max(1.0, hi * 2))
    return Codebook(tuple(float(f"{t:.4g}") for t in thresholds), tuple(rates))
