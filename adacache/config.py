"""What an AdaCache Apply asks for: presets, the codebook or calibrated plan, MoReg, the metric
and where caching may act (``AdaCacheConfig``), checked when it is made so a bad value is named
at the node that received it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .codebook import Codebook, CodebookError, preset_codebook
from .metrics import METRICS
from .moreg import MoRegSettings
from .plan import CalibratedPlan

# "auto" presets (ours): a calibrated plan at this speed when runs of the same model and setup
# are recorded, else this run calibrates (every step computed, recorded); the ComfyUI layer
# resolves them per sampling call (nodes/auto.py) into "custom" with the plan or "calibrate".
AUTO_PRESETS = {"auto balanced (3x)": 3.0, "auto quality (2x)": 2.0, "auto fast (4x)": 4.0,
                "auto fastest (5x)": 5.0}
PRESET_CHOICES = (*AUTO_PRESETS, "fast", "medium", "slow", "custom", "calibrate")
# preset "calibrate" runs this: rate 1 whatever the distance, so every step is computed (and its
# changes over every gap and its motion recorded)
EVERY_STEP_CODEBOOK = Codebook((1.0e9,), (1,))


class MetricBlocksError(ValueError):
    pass


def parse_metric_blocks(spec: str, n_blocks: int) -> tuple[int, ...]:
    """'middle' (n // 2), 'first', 'last', or comma-separated indices (negative from the end)."""
    named = {"middle": n_blocks // 2, "mid": n_blocks // 2, "first": 0, "last": n_blocks - 1}
    out: list[int] = []
    for i, part in enumerate(str(spec).split(",")):
        part = part.strip().lower()
        if part in named:
            index = named[part]
        else:
            try:
                index = int(part)
            except ValueError:
                raise MetricBlocksError(
                    f"metric block entry {i + 1} ({part!r}) is not 'middle', 'first', 'last' "
                    "or a block index"
                ) from None
            if index < 0:
                index += n_blocks
        if not 0 <= index < n_blocks:
            raise MetricBlocksError(
                f"metric block entry {i + 1} ({part!r}) is outside the stack of {n_blocks} blocks"
            )
        if index not in out:
            out.append(index)
    return tuple(out)


@dataclass(frozen=True)
class AdaCacheConfig:
    preset: str = "fast"
    # preset "custom" runs one of these (ignored by "calibrate"): thresholds -> rates, or a
    # calibrated plan (AdaCache Calibrate, a saved plan, an auto preset)
    codebook: Codebook | None = None
    plan: CalibratedPlan | None = None
    moreg: MoRegSettings | None = None
    metric: str = "l1"
    metric_blocks: str = "middle"
    start_percent: float = 0.0  # caching allowed from this fraction of the noise schedule ...
    end_percent: float = 1.0  # ... up to this one
    verbose: bool = False
    offload_cache: bool = False  # keep cached residuals on the offload device (CPU memory)
    notes: tuple[str, ...] = ()  # said in every run's summary (e.g. what replaced the preset)

    def __post_init__(self):
        if self.preset not in PRESET_CHOICES:
            raise CodebookError(f"unknown preset {self.preset!r}; choose {PRESET_CHOICES}")
        if self.codebook is not None and not isinstance(self.codebook, Codebook):
            raise CodebookError(f"codebook {self.codebook!r} is not a Codebook (a calibrated "
                                "plan goes in 'plan')")
        if self.plan is not None and not isinstance(self.plan, CalibratedPlan):
            raise CodebookError(f"plan {self.plan!r} is not a CalibratedPlan")
        if self.codebook is not None and self.plan is not None:
            raise CodebookError("give a codebook or a calibrated plan, not both")
        if self.preset == "custom" and self.codebook is None and self.plan is None:
            raise CodebookError(
                "preset 'custom' needs a codebook or a calibrated plan: connect a Codebook "
                "Editor or AdaCache Calibrate to 'codebook'"
            )
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {METRICS}")
        for name in ("start_percent", "end_percent"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be a finite number")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError("need 0 <= start_percent <= end_percent <= 1")

    def rule_for(self, steps: float) -> Codebook | CalibratedPlan:
        """What picks the rates of a run of ``steps`` steps: a codebook or a calibrated plan."""
        if self.preset in AUTO_PRESETS:
            raise CodebookError(f"preset {self.preset!r} is resolved per sampling call first")
        if self.preset == "calibrate":
            return EVERY_STEP_CODEBOOK
        if self.preset == "custom":
            return self.plan or self.codebook
        return preset_codebook(self.preset, steps)
