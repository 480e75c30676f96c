"""Codebooks: ordered (threshold, rate) pairs that turn a distance into a cache rate.

A distance ``c`` selects the first entry with ``c < threshold``; the last entry catches
everything above (its threshold acts as +inf). The rate ``tau`` is the number of steps until
the next compute step (``tau = 1`` computes every step).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar


class CodebookError(ValueError):
    """An invalid codebook; the message names the offending entry."""


@dataclass(frozen=True)
class Codebook:
    """Thresholds -> rates, and nothing else (a calibrated plan is ``plan.CalibratedPlan``)."""

    KIND: ClassVar[str] = "codebook"  # the typed name the summary, saved files and UI read
    thresholds: tuple[float, ...]
    rates: tuple[int, ...]

    def __post_init__(self):
        validate(self.thresholds, self.rates)

    def planner(self, run_positions, forced=frozenset(), check_interrupt=None, weights=None):
        """What places a run's compute steps (``CacheSchedule``): none, the thresholds pick
        each rate (a calibrated plan returns its ``plan.Planner``)."""
        return None

    def rate_for(self, distance: float) -> int:
        for threshold, rate in zip(self.thresholds[:-1], self.rates[:-1], strict=True):
            if distance < threshold:
                return rate
        return self.rates[-1]

    def to_dict(self) -> dict:
        return {"kind": self.KIND, "thresholds": list(self.thresholds), "rates": list(self.rates)}

    def summary_values(self) -> dict:
        """What the log, the node and the Report read (typed: ``kind`` says what ran)."""
        return {"kind": self.KIND, "thresholds": list(self.thresholds), "rates": list(self.rates)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Codebook:
        return cls.from_dict(parse_json(text))

    @classmethod
    def from_dict(cls, data: dict) -> Codebook:
        """The thresholds and rates of ``data`` (of a calibrated plan's dict: its plain codebook;
        ``plan.codebook_or_plan`` reads either as what it is)."""
        return cls(*_coerce(data["thresholds"], data["rates"]))

    @classmethod
    def from_text(cls, thresholds: str, rates: str) -> Codebook:
        """Parses the Codebook Editor's comma-separated fields.

        Also accepts the labelled form the log prints (``thresholds: 0.03, 1 | rates: 6, 1``),
        pasted whole into either field or split over both.
        """
        return cls(
            *_coerce(
                _split(_field(thresholds, rates, "thresholds"), "thresholds"),
                _split(_field(rates, thresholds, "rates"), "rates"),
            )
        )

    @classmethod
    def from_pairs(cls, pairs: dict[float, int] | list[tuple[float, int]]) -> Codebook:
        items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
        return cls(*_coerce([t for t, _ in items], [r for _, r in items]))

    def describe(self) -> str:
        pairs = zip(self.thresholds, self.rates, strict=True)
        return "{" + ", ".join(f"{t:g}: {r}" for t, r in pairs) + "}"

    def editor_text(self) -> str:
        """The Codebook Editor's two fields, in a form it accepts as is (one line per field,
        or pasted whole); thresholds keep every digit they need."""
        return (f"thresholds: {', '.join(_short(t) for t in self.thresholds)} | "
                f"rates: {', '.join(str(r) for r in self.rates)}")


def _short(value: float) -> str:
    """``value`` as short as ``:g`` writes it, with all digits where that would round it."""
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def _field(text, other, name: str) -> str:
    """The ``name`` part of a labelled ``thresholds: ... | rates: ...`` text, else ``text``."""
    for source in (text, other):
        parts = [p.strip() for p in str(source).split("|")]
        for part in parts:
            label, sep, rest = part.partition(":")
            if sep and label.strip().lower() == name:
                return rest
    return str(text)


def parse_json(text: str) -> dict:
    """A codebook's or calibrated plan's JSON object (both have thresholds and rates)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CodebookError(f"codebook JSON is unparsable: {e}") from None
    if not isinstance(data, dict) or "thresholds" not in data or "rates" not in data:
        raise CodebookError('codebook JSON must be an object with "thresholds" and "rates"')
    return data


def number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CodebookError(f"{name} ({value!r}) is not a number") from None
    if not math.isfinite(number):
        raise CodebookError(f"{name} ({value!r}) must be a finite number")
    return number


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
# for N steps is built entry by entry (ours: the paper gives 30 and 100 steps only):
#   30 <= N <= 100: geometric interpolation in log(N) between the anchors,
#       alpha = ln(N / 30) / ln(100 / 30)
#       threshold_i = t30_i ** (1 - alpha) * t100_i ** alpha
#       rate_i      = round(r30_i ** (1 - alpha) * r100_i ** alpha)
#   N < 30 or N > 100: the nearest anchor scaled with the step density (a per-step distance
#       shrinks like 1 / N, a cache rate covers the same share of the schedule):
#       threshold_i = t_A * A / N,  rate_i = round(r_A * N / A)   (A = 30 or 100)
# Rates are at least 1. N = 30 and N = 100 give the paper's codebooks exactly. The last
# threshold only catches the rest: 1.0, or twice the one before it if that is larger.
ANCHOR_STEPS = (30, 100)
MIN_STEPS, MAX_STEPS = 1, 10000
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
    (a_steps, b_steps), (r30, r100) = ANCHOR_STEPS, PRESET_RATES[name]
    if n < a_steps:
        thresholds = [t * a_steps / n for t in _T30]
        rates = [r * n / a_steps for r in r30]
    elif n > b_steps:
        thresholds = [t * b_steps / n for t in _T100]
        rates = [r * n / b_steps for r in r100]
    else:
        alpha = math.log(n / a_steps) / math.log(b_steps / a_steps)
        thresholds = [a ** (1 - alpha) * b**alpha for a, b in zip(_T30, _T100, strict=True)]
        rates = [a ** (1 - alpha) * b**alpha for a, b in zip(r30, r100, strict=True)]
    thresholds = [round(t, 4) for t in thresholds[:-1]]
    thresholds.append(max(1.0, round(2 * thresholds[-1], 4)))
    return Codebook(tuple(thresholds), tuple(max(1, round(r)) for r in rates))


def calibrated_codebook(distances: list[float], rates: tuple[int, ...]) -> Codebook | None:
    """Supplement A.2: split the observed distance range uniformly over the given rates.

    A suggestion for reports: returns None (never raises) when the distances give no range,
    when the rates never reuse a step (all 1), or when rounding would merge thresholds.
    """
    try:
        finite = sorted(
            float(d) for d in distances if d is not None and math.isfinite(float(d)) and d > 0
        )
        rates = tuple(int(r) for r in rates)
    except (TypeError, ValueError):
        return None
    if len(finite) < 2 or len(rates) < 2 or finite[-1] <= finite[0] or max(rates) <= 1:
        return None
    lo, hi = finite[0], finite[-1]
    n = len(rates)
    raw = [lo + (hi - lo) * (i + 1) / n for i in range(n - 1)]
    raw.append(max(1.0, hi * 2))
    for digits in (4, 6, 8, 12, 17):  # as short as possible, but never two equal thresholds
        thresholds = tuple(float(f"{t:.{digits}g}") for t in raw)
        increasing = all(b > a for a, b in zip(thresholds, thresholds[1:], strict=False))
        if increasing and thresholds[0] > 0:
            try:
                return Codebook(thresholds, rates)
            except CodebookError:
                return None
    return None
