"""The pack's main nodes (V3 schema): AdaCache Apply, Codebook Editor, MoReg Settings. The
others are in calibration_nodes.py and report.py; the list ComfyUI loads is extension.py's."""

from __future__ import annotations

import math

from comfy.patcher_extension import WrappersMP
from comfy_api.latest import io

from ..adacache import (
    AUTO_PRESETS,
    METRICS,
    PRESET_CHOICES,
    AdaCacheConfig,
    CalibratedPlan,
    Codebook,
    CodebookError,
    MoRegSettings,
    preset_codebook,
)
from .calibration_store import RECORDER_KEY, attach_recorder
from .io_types import Codebook_IO, MoReg_IO
from .patch import apply_adacache, check_model
from .saved_codebooks import USE_VALUES_ABOVE, load_saved, saved_fingerprint, saved_names

CATEGORY = "AdaCache"
_FAST30 = preset_codebook("fast", 30)


def _preset_help() -> str:
    """What each preset does, with its codebook at 30 steps (it scales with the step count)."""
    lines = [
        "auto balanced (3x): no setup. The first run of a model and setup (latent size, "
        "sampler, cfg) computes every step - full quality - and is recorded; later runs use a "
        "plan calibrated to those runs for 3x fewer block-stack steps (ours).",
        "auto quality (2x): the same, 2x. auto fast (4x): the same, 4x. auto fastest (5x): "
        "the same, 5x.",
    ]
    for name, what in (
        ("fast", "skips the most steps"),
        ("medium", "between fast and slow"),
        ("slow", "closest to uncached"),
    ):
        cb30, cb50 = preset_codebook(name, 30), preset_codebook(name, 50)
        lines.append(
            f"{name}: {what}. At 30 steps a per-step distance under "
            f"{', '.join(f'{t:g}' for t in cb30.thresholds[:-1])} (else above) waits "
            f"{', '.join(map(str, cb30.rates))} steps until the next full computation "
            f"(at 50 steps: rates {', '.join(map(str, cb50.rates))})."
        )
    lines.append(
        "custom: the connected codebook (Codebook Editor) or calibrated plan (AdaCache "
        "Calibrate, or a saved plan picked in a Codebook Editor). A connected one is used with "
        "any preset except calibrate; the log says so."
    )
    lines.append(
        "calibrate: computes every step (no speedup) and records each step's distance and "
        "motion, so AdaCache Calibrate can fit a plan to your model; queue a few seeds."
    )
    return "\n".join(lines)


def _check_finite(node: str, **values) -> None:
    for name, value in values.items():
        if not math.isfinite(float(value)):
            raise ValueError(f"{node}: {name} ({value!r}) must be a finite number")


def _check_connected(node: str, value, expected, name: str, source: str):
    if value is not None and not isinstance(value, expected):
        raise ValueError(
            f"{node}: '{name}' got {type(value).__name__} {str(value)[:60]!r}; connect "
            f"the output of {source} (literal values are not accepted)"
        )


def settings_inputs() -> list:
    """AdaCache Apply's inputs after the model: every Apply node (Raylight's too) has them."""
    return [
        io.Combo.Input(
            "preset",
            options=list(PRESET_CHOICES),
            default="auto balanced (3x)",
            tooltip="Speed/quality preset (the paper's codebooks, scaled to your step "
            "count). A step whose features changed little waits longer before the "
            "block stack runs again.\n" + _preset_help(),
        ),
        io.Combo.Input(
            "metric",
            options=list(METRICS),
            default="l1",
            tooltip="How the change of the metric block's residual is measured "
            "(relative L1 per step in the paper; L2 similar; cosine weaker).",
        ),
        io.String.Input(
            "metric_blocks",
            default="middle",
            tooltip="Block(s) whose residual change decides the cache rate: 'middle', "
            "'first', 'last' or indices like '10, 20' (averaged).",
        ),
        io.Float.Input(
            "start_percent",
            default=0.0,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Caching may start at this fraction of the noise schedule "
            "(0 = from the start; the first step is always computed, the paper's "
            "presets also compute the second).",
        ),
        io.Float.Input(
            "end_percent",
            default=1.0,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Caching stops after this fraction of the noise schedule "
            "(1 = to the end; the paper's presets always compute the last two steps, a "
            "calibrated plan places its own).",
        ),
        io.Boolean.Input(
            "verbose",
            default=False,
            tooltip="Log a per-step table: sigma, computed or reused, distance, "
            "motion, MoReg factor and chosen cache rate.",
        ),
        io.Boolean.Input(
            "offload_cache",
            default=False,
            tooltip="Keep the cached residuals in CPU memory instead of VRAM (about "
            "2 hidden states per cond/uncond stream): saves VRAM, costs one copy per "
            "step.",
        ),
        Codebook_IO.Input(
            "codebook",
            optional=True,
            tooltip="A codebook (thresholds -> rates) from a Codebook Editor, or a "
            "calibrated plan from AdaCache Calibrate or a saved plan picked in a "
            "Codebook Editor (it plans each gap on your model's change profile). When "
            "connected it is used whatever the preset (the log says it replaces the "
            "preset), except with preset 'calibrate', which computes every step.",
        ),
        MoReg_IO.Input(
            "moreg",
            optional=True,
            tooltip="Motion Regularization from MoReg Settings: recompute more often on "
            "fast-moving videos. Off when not connected.",
        ),
    ]


def build_config(node: str, preset, metric, metric_blocks, start_percent, end_percent, verbose,
                 offload_cache=False, codebook=None, moreg=None) -> AdaCacheConfig:
    """The AdaCacheConfig of an Apply node's settings (``settings_inputs``), each bad value
    named at ``node``."""
    _check_connected(node, codebook, (Codebook, CalibratedPlan), "codebook",
                     "AdaCache Codebook Editor or AdaCache Calibrate")
    _check_connected(node, moreg, MoRegSettings, "moreg", "AdaCache MoReg Settings")
    _check_finite(node, start_percent=start_percent, end_percent=end_percent)
    if preset not in PRESET_CHOICES:
        raise CodebookError(f"{node}: unknown preset {preset!r}; choose one of {PRESET_CHOICES}")
    notes = ()
    what = "calibrated plan" if isinstance(codebook, CalibratedPlan) else "codebook"
    if codebook is not None and preset not in ("custom", "calibrate"):
        notes = (f"the connected {what} replaces preset '{preset}' (a connected codebook "
                 "or plan is always used)",)
        preset = "custom"
    elif codebook is not None and preset == "calibrate":
        notes = (f"preset 'calibrate' computes every step; the connected {what} is not "
                 "used",)
    used = codebook if preset == "custom" else None
    plan = used if isinstance(used, CalibratedPlan) else None
    return AdaCacheConfig(
        preset=preset, codebook=None if plan else used, plan=plan, moreg=moreg, metric=metric,
        metric_blocks=metric_blocks, start_percent=start_percent, end_percent=end_percent,
        verbose=verbose, offload_cache=offload_cache, notes=notes,
    )


def patch_model(model, config: AdaCacheConfig, node_id=None, apply=apply_adacache):
    """A clone of ``model`` with AdaCache (``apply``: ``apply_adacache``, or a worker's) and,
    for the presets that record runs (calibrate, auto), the calibration recorder."""
    patched = apply(model, config, node_id=node_id)
    patched.remove_wrappers_with_key(WrappersMP.OUTER_SAMPLE, RECORDER_KEY)
    if config.preset == "calibrate" or config.preset in AUTO_PRESETS:
        attach_recorder(patched)  # auto records the runs it calibrates on
    return patched


class AdaCacheApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheApply",
            display_name="AdaCache Apply",
            category=CATEGORY,
            description=(
                "Adaptive Caching for video DiTs: runs the transformer's block stack only on "
                "compute steps and reuses its residual in between, on a schedule chosen per "
                "video from how fast the features change."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The diffusion model to accelerate (Wan, HunyuanVideo, LTX-Video, "
                    "Mochi, Cosmos, Flux and other DiTs; see the README's support matrix).",
                ),
                *settings_inputs(),
            ],
            outputs=[io.Model.Output(tooltip="The model with AdaCache patched in (a clone).")],
            hidden=[io.Hidden.unique_id],
            # ComfyUI 0.3.75 leaves a V3 node's hidden UNIQUE_ID out of its cache key: without
            # this, two Apply nodes with the same inputs share one output (and node id).
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, model, preset, metric, metric_blocks, start_percent, end_percent, verbose,
                offload_cache=False, codebook=None, moreg=None) -> io.NodeOutput:
        check_model(model, "AdaCache Apply")
        config = build_config("AdaCache Apply", preset, metric, metric_blocks, start_percent,
                              end_percent, verbose, offload_cache, codebook, moreg)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        return io.NodeOutput(patch_model(model, config, node_id))


class AdaCacheCodebookEditor(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheCodebookEditor",
            display_name="AdaCache Codebook Editor",
            category=CATEGORY,
            description="A codebook you type, or a saved codebook or calibrated plan picked by "
            "name. A codebook: a distance below threshold i selects cache rate i. A calibrated "
            "plan (saved by AdaCache Calibrate) is not a codebook: it picks each gap from your "
            "model's recorded change profile at its speed; the fields then show its plain "
            "codebook, which the plan does not use.",
            inputs=[
                io.String.Input(
                    "thresholds",
                    default=", ".join(f"{t:g}" for t in _FAST30.thresholds),
                    tooltip="Strictly increasing distance thresholds, comma-separated; the "
                    "last one catches every larger distance.",
                ),
                io.String.Input(
                    "rates",
                    default=", ".join(str(r) for r in _FAST30.rates),
                    tooltip="Cache rate per threshold (integer >= 1): steps until the next "
                    "full computation. Bigger = faster.",
                ),
                io.Combo.Input(
                    "saved",
                    options=[USE_VALUES_ABOVE, *saved_names()],
                    default=USE_VALUES_ABOVE,
                    optional=True,  # API prompts written before it keep working
                    tooltip="A saved file (user directory, adacache/codebooks): a calibrated "
                    "plan saved by AdaCache Calibrate, or a codebook. When one is picked, the "
                    "file is used (the line below says which kind it is) and the fields above "
                    f"only display its thresholds and rates; '{USE_VALUES_ABOVE}' uses the "
                    "fields.",
                ),
            ],
            outputs=[Codebook_IO.Output(
                tooltip="The codebook, or the picked saved file (a calibrated plan or a "
                "codebook), for AdaCache Apply's 'codebook' input (a connected one always "
                "replaces the preset).")],
        )

    @classmethod
    def fingerprint_inputs(cls, thresholds, rates, saved=USE_VALUES_ABOVE):
        if saved and saved != USE_VALUES_ABOVE:
            return saved_fingerprint(saved)  # re-run when the saved file changes
        return f"{thresholds}|{rates}"

    @classmethod
    def execute(cls, thresholds, rates, saved=USE_VALUES_ABOVE) -> io.NodeOutput:
        if saved and saved != USE_VALUES_ABOVE:
            rule, _ = load_saved(saved)  # a Codebook or a CalibratedPlan
            return io.NodeOutput(rule)
        return io.NodeOutput(Codebook.from_text(thresholds, rates))


class AdaCacheMoRegSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = MoRegSettings()
        return io.Schema(
            node_id="AdaCacheMoRegSettings",
            display_name="AdaCache MoReg Settings",
            category=CATEGORY,
            description="Motion Regularization: scale the distance by a motion score and its "
            "gradient so fast-moving videos get recomputed more often.",
            inputs=[
                io.Boolean.Input("enabled", default=True, tooltip="Turn MoReg on or off."),
                io.String.Input(
                    "frame_strides",
                    default=", ".join(str(s) for s in d.strides),
                    tooltip="Frame distances for the motion score, comma-separated (averaged).",
                ),
                io.Float.Input(
                    "norm_a", default=d.norm_a, min=0.001, max=10.0, step=0.001,
                    tooltip="Motion normalisation m' = (m / a) ** p / b: a is the motion "
                    "score that counts as neutral.",
                ),
                io.Float.Input(
                    "norm_p", default=d.norm_p, min=0.1, max=32.0, step=0.1,
                    tooltip="Exponent p: how sharply motion above/below a changes the factor.",
                ),
                io.Float.Input(
                    "norm_b", default=d.norm_b, min=0.001, max=100.0, step=0.01,
                    tooltip="Divisor b of the normalised motion.",
                ),
                io.Float.Input(
                    "gradient_scale", default=d.gradient_scale, min=0.0, max=100.0, step=0.1,
                    tooltip="Weight g of the motion gradient across compute steps.",
                ),
                io.Float.Input(
                    "window_start", default=d.window_start, min=0.0, max=1.0, step=0.01,
                    tooltip="MoReg is active from this fraction of the steps ...",
                ),
                io.Float.Input(
                    "window_end", default=d.window_end, min=0.0, max=1.0, step=0.01,
                    tooltip="... until this fraction (noisy early steps give unreliable motion).",
                ),
            ],
            outputs=[MoReg_IO.Output(tooltip="MoReg settings, for AdaCache Apply.")],
        )

    @classmethod
    def execute(
        cls, enabled, frame_strides, norm_a, norm_p, norm_b, gradient_scale, window_start,
        window_end,
    ) -> io.NodeOutput:
        try:
            strides = tuple(int(s) for s in frame_strides.replace(";", ",").split(",") if s.strip())
        except ValueError:
            raise ValueError(f"frame_strides {frame_strides!r} must be integers >= 1") from None
        _check_finite(
            "AdaCache MoReg Settings", norm_a=norm_a, norm_p=norm_p, norm_b=norm_b,
            gradient_scale=gradient_scale, window_start=window_start, window_end=window_end,
        )
        return io.NodeOutput(
            MoRegSettings(
                enabled=enabled,
                strides=strides,
                norm_a=norm_a,
                norm_p=norm_p,
                norm_b=norm_b,
                gradient_scale=gradient_scale,
                window_start=window_start,
                window_end=window_end,
            )
        )
