"""A run's side of calibration: what a calibration run records (per stream, the change over
every gap; carried on across the slices of one schedule) and the MoReg a calibrated plan brings
back. Fitting a plan from the records is ``calibration.py``."""

from __future__ import annotations

from dataclasses import dataclass

from .calibration import CalibrationSample, GapRecorder
from .codebook import Codebook
from .moreg import MoRegSettings
from .plan import CalibratedPlan


@dataclass
class CalibrationCarry:
    """A calibration run that ended at a slice boundary (KSamplerAdvanced, one model's part):
    its sample so far, its length and its per-stream recorders (``(identity across slices,
    recorder)`` in the order the streams appeared), so the next slice of the same schedule
    records gaps across the cut."""

    sample: CalibrationSample
    steps: int
    recorders: list[tuple]


class CalibrationRecording:
    """The gap changes of one calibration run: a ``GapRecorder`` per stream and, per step,
    one row per stream (``gap_rows``); ``carry`` continues the previous slice's."""

    def __init__(self, metric: str, carry: CalibrationCarry | None = None):
        self.metric, self.carry = metric, carry
        self.recorders: dict[object, GapRecorder] = {}
        self.gap_rows: dict[int, list[tuple]] = {}  # step -> one row per stream
        self._carried = list(carry.recorders) if carry else []

    def add(self, stream_key, step: int, samples: dict) -> None:
        """A stream's metric samples at ``step`` (every step computes when calibrating)."""
        recorder = self.recorders.get(stream_key)
        if recorder is None:
            recorder = self._carried_for(stream_key) or GapRecorder(self.metric)
            self.recorders[stream_key] = recorder
        offset = self.carry.steps if self.carry else 0
        self.gap_rows.setdefault(step, []).append(recorder.add(offset + step, samples))

    def _carried_for(self, stream_key) -> GapRecorder | None:
        """A continued calibration: the previous slice's recorder of the same stream (cond or
        uncond, window and shape: work units may bring the streams in another order), else the
        next one in the order the streams appeared."""
        identity = stream_key.across_slices()
        for i, (carried, _) in enumerate(self._carried):
            if identity is not None and carried == identity:
                return self._carried.pop(i)[1]
        return self._carried.pop(0)[1] if self._carried else None

    def sample(self, trace, positions, setup: dict | None) -> CalibrationSample:
        """The run (its ``trace`` of step records) as a calibration sample: per step, the
        change over every gap (streams averaged, as the schedule averages them) and the
        motion score; after the carried slices, if any."""
        rows: list[tuple] = []
        for step in range(len(trace)):
            per_stream = self.gap_rows.get(step, [])
            width = max((len(r) for r in per_stream), default=0)
            row = []
            for k in range(width):
                values = [r[k] for r in per_stream if k < len(r) and r[k] is not None]
                row.append(sum(values) / len(values) if values else None)
            rows.append(tuple(row))
        sample = CalibrationSample(
            tuple(r.distance for r in trace), tuple(r.motion for r in trace), tuple(rows),
            positions, setup or None,
        )
        return self.carry.sample.then(sample) if self.carry else sample

    def carry_on(self, sample: CalibrationSample) -> CalibrationCarry:
        """What the next slice of the same schedule needs to continue, after ``sample``."""
        recorders = [(key.across_slices(), recorder)
                     for key, recorder in self.recorders.items()]  # in order of appearance
        return CalibrationCarry(sample, sample.n_steps, recorders)


def moreg_for_plan(moreg: MoRegSettings | None, codebook: Codebook | CalibratedPlan
                   ) -> tuple[MoRegSettings | None, str | None]:
    """The MoReg a run uses, and a note when it is not the one asked for. A calibrated plan
    reads MoReg only normalised to the model (a reference motion): the MoReg Settings
    constants give a factor near 0 there, which would skip almost every step. So a plan brings
    back the MoReg calibrated with it, and MoReg without a reference is turned off with a plan
    that has none."""
    if not isinstance(codebook, CalibratedPlan) or (
        moreg is not None and (moreg.reference or not moreg.enabled)
    ):
        return moreg, None  # no plan, MoReg calibrated already, or switched off
    carried = codebook.moreg
    if moreg is None:
        note = ("MoReg: the calibrated plan brings back the MoReg calibrated with it"
                if carried is not None else None)
        return carried, note
    if carried is not None:
        return carried, (
            "MoReg: the connected MoReg Settings' reference constants do not fit a calibrated "
            "plan; the MoReg calibrated with the plan is used instead"
        )
    return None, (
        "MoReg is off for this run: MoReg Settings' reference constants do not fit a "
        "calibrated plan (calibrate with 'moreg' on to get MoReg normalised to the model)"
    )
