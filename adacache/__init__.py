"""AdaCache core: pure torch, never imports ComfyUI."""

from .cache_store import StreamKey
from .calibration import CalibrationResult, CalibrationSample, calibrate
from .codebook import PRESETS, Codebook, CodebookError, calibrated_codebook, preset_codebook
from .config import (
    AUTO_PRESETS,
    PRESET_CHOICES,
    AdaCacheConfig,
    MetricBlocksError,
    parse_metric_blocks,
)
from .families import (
    BLOCKS,
    FAMILIES,
    WHOLE,
    Family,
    UnsupportedModelError,
    block_keys,
    family_for,
    register,
)
from .metrics import METRICS, motion_score, relative_distance
from .moreg import MoRegSettings, MotionRegularizer
from .plan import CalibratedPlan, codebook_or_plan
from .runtime import COMPUTE, PASSTHROUGH, REUSE, AdaCacheRun, CallPlan
from .schedule import (
    CONTROL_HINTS,
    MODEL_PATCHES,
    CacheSchedule,
    StepRecord,
    equivalent_steps,
    predict_schedule,
    preview_schedule,
    step_of_sigma,
)
from .summary import format_summary, format_trace, plain_codebook, rule_text

__all__ = [
    "AUTO_PRESETS", "BLOCKS", "WHOLE", "register",
    "COMPUTE", "CONTROL_HINTS", "MODEL_PATCHES", "FAMILIES", "METRICS", "PASSTHROUGH",
    "PRESETS", "PRESET_CHOICES", "REUSE",
    "AdaCacheConfig", "AdaCacheRun", "CalibratedPlan", "CalibrationResult", "CalibrationSample",
    "CacheSchedule", "CallPlan", "Codebook", "CodebookError", "Family",
    "MetricBlocksError", "MoRegSettings", "MotionRegularizer", "StepRecord", "StreamKey",
    "UnsupportedModelError", "block_keys", "calibrate", "calibrated_codebook", "codebook_or_plan",
    "equivalent_steps", "family_for", "format_summary", "format_trace", "motion_score",
    "parse_metric_blocks", "plain_codebook", "rule_text",
    "predict_schedule", "preset_codebook", "preview_schedule", "relative_distance", "step_of_sigma",
]
