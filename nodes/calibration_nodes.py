"""The node "AdaCache Calibrate" (recorded runs: calibration_store.py; saved files and their
route: saved_codebooks.py).

Runs of a model patched by AdaCache Apply with preset ``calibrate`` are recorded per model
(``calibration_store.py``), so the runs of several queued prompts (seeds, prompts) accumulate.
AdaCache Calibrate fits a calibrated plan to them (``adacache.calibrate``) and saves it as
``<user dir>/default/adacache/codebooks/<name>.json``, which the Codebook Editor lists by name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict

from comfy_api.latest import io, ui

from ..adacache import AUTO_PRESETS, MoRegSettings, calibrate
from .calibration_store import STORE, RecordedRun, attach_recorder  # noqa: F401 (re-exported)
from .io_types import Codebook_IO, MoReg_IO
from .patch import check_model
from .report import check_latent
from .run_setup import same_setup, store_key
from .saved_codebooks import (  # noqa: F401 (re-exported)
    USE_VALUES_ABOVE,
    check_name,
    list_codebooks,
    save_codebook,
)

log = logging.getLogger("AdaCache")
RUNS_ALL, RUNS_LATEST, RUNS_ALL_THEN_FORGET = (
    "all recorded",
    "latest run only",
    "all recorded, then start over",
)


# --------------------------------------------------------------------------- the node
def _handle_of(model):
    handle = model.model_options.get("transformer_options", {}).get("adacache_handle")
    if handle is None:
        raise ValueError(
            "AdaCache Calibrate: 'model' is not patched by AdaCache; connect the MODEL output of "
            "AdaCache Apply (preset 'calibrate')"
        )
    if handle.config.preset != "calibrate" and handle.config.preset not in AUTO_PRESETS:
        raise ValueError(
            f"AdaCache Calibrate: the connected AdaCache Apply uses preset "
            f"'{handle.config.preset}'; set it to 'calibrate' so every step is computed and "
            "recorded, queue a few seeds or prompts, then calibrate"
        )
    return handle


def _finite(value, name: str, node: str = "AdaCache Calibrate") -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{node}: {name} ({value!r}) must be a finite number")
    return value


class AdaCacheCalibrate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheCalibrate",
            display_name="AdaCache Calibrate",
            category="AdaCache",
            description=(
                "Fits a calibrated plan to YOUR model from calibration runs (AdaCache Apply with "
                "preset 'calibrate': every step computed, distances recorded): each gap is "
                "planned on the runs' change profile at the speed asked. Queue a few seeds or "
                "prompts, then connect the 'plan' output to AdaCache Apply's 'codebook' input, "
                "or pick the saved name in a Codebook Editor."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The MODEL output of AdaCache Apply with preset 'calibrate' (the "
                    "same one the sampler uses).",
                ),
                io.Latent.Input(
                    "latent",
                    tooltip="The sampler's LATENT output: only makes this node run after the "
                    "sampler.",
                ),
                io.Float.Input(
                    "speed",
                    default=3.0,
                    min=1.0,
                    max=50.0,
                    step=0.1,
                    tooltip="Target: how many times fewer steps run the transformer's block "
                    "stack (3 = about 10 of 30 steps). The wall-clock speedup is lower (text "
                    "encoding, VAE and cached steps still cost time).",
                ),
                io.Boolean.Input(
                    "moreg",
                    default=False,
                    tooltip="Also fit Motion Regularization to this model's motion scores "
                    "(video models): output 'moreg' then carries the constants; off gives none.",
                ),
                io.String.Input(
                    "name",
                    default="calibrated",
                    tooltip="Save the plan under this name (user directory, "
                    "adacache/codebooks/<name>.json) so a Codebook Editor can pick it in "
                    "'saved'. The same name overwrites; empty = do not save.",
                ),
                io.Combo.Input(
                    "runs",
                    options=[RUNS_ALL, RUNS_LATEST, RUNS_ALL_THEN_FORGET],
                    default=RUNS_ALL,
                    tooltip="Which calibration runs to fit: 'all recorded' = every run of the "
                    "connected AdaCache Apply since ComfyUI started (queue several seeds/"
                    "prompts; each run adds one); 'latest run only'; 'all recorded, then start "
                    "over' = fit, then forget them so the next runs start a new calibration.",
                ),
            ],
            outputs=[
                Codebook_IO.Output(display_name="plan", tooltip="The fitted calibrated plan, "
                                   "for AdaCache Apply's 'codebook' input (a plan, not a "
                                   "codebook: it carries its plain codebook only to show it)."),
                MoReg_IO.Output(display_name="moreg", tooltip="MoReg settings fitted to the "
                                "model, or none when 'moreg' is off."),
                io.String.Output(display_name="summary", tooltip="What was fitted and how it "
                                 "schedules the calibration runs."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, latent, speed, moreg, name, runs) -> io.NodeOutput:
        check_model(model, "AdaCache Calibrate")
        check_latent(latent, "AdaCache Calibrate")  # a literal would let it run before sampling
        check_runs(runs)
        handle = _handle_of(model)
        key = store_key(model)
        return fit_runs(STORE.runs(key), speed, moreg, name, runs, handle.node_id,
                        f"this model ({key})", forget=lambda: STORE.clear(key))


def check_runs(runs, node: str = "AdaCache Calibrate") -> None:
    if runs not in (RUNS_ALL, RUNS_LATEST, RUNS_ALL_THEN_FORGET):  # the host does not check
        raise ValueError(
            f"{node}: 'runs' got {str(runs)[:60]!r}; choose one of "
            f"{RUNS_ALL!r}, {RUNS_LATEST!r}, {RUNS_ALL_THEN_FORGET!r}"
        )


def fit_runs(recorded: list[RecordedRun], speed, moreg, name, runs, node_id, where: str,
             forget: Callable[[], None], node: str = "AdaCache Calibrate") -> io.NodeOutput:
    """AdaCache Calibrate's work on ``recorded`` runs (of one model, in the order they
    finished; ``where`` names them in errors): the plan fitted, saved under ``name``;
    ``forget`` clears the recorded runs (``runs``: 'all recorded, then start over')."""
    speed = _finite(speed, "speed", node)
    if not recorded:
        raise ValueError(
            f"{node}: no calibration run recorded yet for {where}; queue the workflow (a few "
            "seeds or prompts) with AdaCache Apply's preset 'calibrate'"
        )
    if runs == RUNS_LATEST:
        recorded = recorded[-1:]
    newest = recorded[-1].sample.setup
    used = [r for r in recorded if same_setup(r.sample.setup, newest)]
    skipped = len(recorded) - len(used)
    result = calibrate([r.sample for r in used], speed=speed, moreg=bool(moreg))
    n_steps = result.n_steps
    used = [used[i] for i in result.used]  # runs on another schedule are left out
    if runs == RUNS_ALL_THEN_FORGET:
        forget()
    lines = [
        f"{node}: {len(used)} run(s) of {n_steps} steps "
        f"({sum(r.batch for r in used)} video(s)) -> {result.describe()}",
    ]
    if skipped:
        lines.append(
            f"{skipped} earlier run(s) on another setup (latent size, sampler or cfg) were "
            "left out (a plan fits one setup)"
        )
    moreg_out = result.moreg if moreg else None
    if moreg and moreg_out is None:
        lines.append(
            "MoReg: the calibration gave no MoReg settings (it needs motion scores, i.e. a "
            "video model); the 'moreg' output is off"
        )
    name, path = str(name).strip(), None
    if name:
        metadata = {
            "speed": speed,
            "n_steps": n_steps,
            "runs": len(used),
            "videos": sum(r.batch for r in used),
            "predicted_computed": list(result.predicted_computed),
            "moreg": asdict(moreg_out) if isinstance(moreg_out, MoRegSettings) else None,
        }
        check_name(name)  # a bad name is the user's to fix: fail now
        try:
            path = save_codebook(name, result.plan, **metadata)
        except OSError as e:  # the fitted plan is still output; say why it was not saved
            path = None
            lines.append(f"could not save '{name}': {e}")
            log.warning("%s: could not save plan %r: %s", node, name, e)
    if name and path is not None:
        lines.append(
            f"saved as '{name}' ({path}); pick it in a Codebook Editor's 'saved' to use the "
            "calibrated plan (the fields alone hold only its plain codebook)"
        )
    summary = "\n".join(lines)
    log.info(summary)
    payload = {
        "node": node_id, "name": name or None, "speed": speed, "n_steps": n_steps,
        "runs": len(used), "kind": result.plan.KIND,
        "thresholds": list(result.plan.codebook.thresholds),  # its plain codebook
        "rates": list(result.plan.codebook.rates),
        "predicted_computed": list(result.predicted_computed), "summary": summary,
    }
    return io.NodeOutput(
        result.plan, moreg_out, summary,
        ui={**ui.PreviewText(summary).as_dict(), "adacache_calibration": [payload]},
    )


CALIBRATION_NODES = [AdaCacheCalibrate]
