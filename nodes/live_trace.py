"""Live trace for the browser: ``adacache.progress`` per finished step, ``adacache.trace`` at
the end of a sampling run, with the run's own step timings.

The sampler wrappers in ``patch.py`` call ``LiveTrace.step_entered`` after every model
evaluation has been placed in a step, and ``LiveTrace.finish`` once the run is over. Sending is
best effort: nothing here may fail or noticeably slow a sampling run.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
import weakref

log = logging.getLogger("AdaCache")
MIN_INTERVAL_S = 0.1  # reused steps finishing faster than this are sent with the next message
# The StepRecord fields a progress event carries (the final trace has every field).
RECORD_FIELDS = ("step", "sigma", "computed", "reason", "calls", "distance", "motion",
                 "moreg_factor", "regularized_distance", "rate", "reference_distance")
# AdaCacheRun -> its LiveTrace, for the wrappers in patch.py (gone with the run)
LIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sanitize(value):
    """``value`` with every NaN/inf float replaced by None (browsers reject them in JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    return value


def _fields(record) -> dict:
    return {f: sanitize(getattr(record, f, None)) for f in RECORD_FIELDS}


def _server():
    try:
        from server import PromptServer

        return PromptServer.instance
    except (ImportError, AttributeError):
        return None


MIN_COMPUTED, MIN_REUSED = 3, 2  # timed steps an estimate needs (step 0 not counted)
MAX_ERROR = 0.15  # the largest relative standard error of the estimate that is shown


def shown_speedup(speedup, computed_call_s: list[float], reused: int, step_ratio: float):
    """(text, None) for a wall-clock speedup the run's own timings support, or (None, why not).

    The estimate is the mean computed call time x all calls / the time sampling took, so its
    uncertainty is that of the mean computed call time (its relative standard error). It is
    hidden for runs with too few timed computed or reused steps, when that error exceeds
    MAX_ERROR, and when it claims more than the block-stack ratio (``step_ratio``), which no
    real run reaches; otherwise rounded to a step no finer than twice that error."""
    n = len(computed_call_s)
    if speedup is None or n < MIN_COMPUTED or reused < MIN_REUSED:
        return None, "too few timed steps in this run"
    mean = sum(computed_call_s) / n
    spread = (sum((s - mean) ** 2 for s in computed_call_s) / (n - 1)) ** 0.5
    error = spread / mean / n**0.5 if mean > 0 else math.inf
    if error > MAX_ERROR:
        return None, f"this run's step times vary ±{error:.0%}"
    if speedup > step_ratio * 1.05:
        return None, "step times too uneven: it exceeds the step ratio"
    step = next(s for s in (0.05, 0.1, 0.2, 0.5) if s >= 2 * error * speedup or s == 0.5)
    value = round(speedup / step) * step
    return f"≈{value:.2f}".rstrip("0").rstrip(".") + "x", None


class LiveTrace:
    """One sampling run's events, for the AdaCache Apply node ``node_id``."""

    def __init__(self, node_id, run, *, calibration: bool = False, enabled: bool = True,
                 sender=None):
        self.node_id = None if node_id is None else str(node_id)
        self.run = run  # an adacache.AdaCacheRun
        self.run_id = uuid.uuid4().hex
        self.calibration = calibration
        enabled = enabled and os.environ.get("ADACACHE_LIVE_TRACE", "1") != "0"
        # ``sender``: a stand-in for this process's PromptServer (``send_sync``, ``client_id``,
        # ``last_prompt_id``), e.g. a Raylight worker's relay to the main process
        self.server = (sender or _server()) if enabled and node_id is not None else None
        # Read now: ComfyUI may reuse the Apply node's cached output across prompts.
        self.prompt_id = getattr(self.server, "last_prompt_id", None)
        self.client_id = getattr(self.server, "client_id", None)
        if self.client_id is None:  # a prompt queued without client_id: sending would
            self.server = None  # broadcast its trace to every connected client
        self.step_start: dict[int, float] = {}  # step -> perf_counter at its first evaluation
        self.sent_steps: set[int] = set()
        self.own_seconds = 0.0  # time spent in this object's code on the sampling thread
        self.unsent: list[int] = []  # finished reused steps held back (see _progress)
        self.last_send = 0.0
        self.sent_setup = False  # the run's codebook and MoReg, sent with the first message

    # -- during sampling -------------------------------------------------------------------
    def step_entered(self, before: int | None, current: int | None) -> None:
        """After an evaluation of step ``current``; ``before`` was the step in progress."""
        start = time.perf_counter()
        try:
            if current is not None and current not in self.step_start:
                self.step_start[current] = time.perf_counter()
            if before is not None and current != before:
                self._progress(before)  # the schedule finalised ``before`` on entering ``current``
        except Exception as e:  # never fail a sampling step for the UI
            log.debug("AdaCache: live trace step failed: %s", e)
        self.own_seconds += time.perf_counter() - start

    def finish(self, summary: dict) -> None:
        """After ``run.finish()``: the last step's progress, then the whole trace."""
        try:
            end = time.perf_counter()
            reached = [r for r in self.run.schedule.trace if r.computed is not None]
            if reached and reached[-1].step not in self.sent_steps:
                self._progress(reached[-1].step, final=True)
            timing = self.timing(end)
            timing["live_trace_s"] = self.own_seconds + time.perf_counter() - end
            self._send("adacache.trace", {
                **summary, "prompt_id": self.prompt_id, "node": self.node_id,
                "run": self.run_id, "calibration": self.calibration, "timing": timing,
            })
        except Exception as e:  # reporting never fails a finished run
            log.debug("AdaCache: could not send the trace to the UI: %s", e)

    # -- pieces ----------------------------------------------------------------------------
    def timing(self, end: float) -> dict:
        """Mean seconds per model evaluation on computed and on cached steps, and the wall-clock
        speedup they imply over computing every step (an estimate: step 0, which carries
        warm-up costs, is left out of the computed mean when other computed steps exist).
        ``speedup_text`` is that estimate rounded to what the run's own timings support, or
        None with ``speedup_note`` saying why it is not shown (see shown_speedup)."""
        trace = self.run.schedule.trace
        starts = sorted(self.step_start.items())
        per_call = {True: [], False: []}
        total = 0.0
        calls_total = 0
        for i, (step, start) in enumerate(starts):
            stop = starts[i + 1][1] if i + 1 < len(starts) else end
            record = trace[step]
            if record.computed is None or record.calls < 1:
                continue
            seconds = max(stop - start, 0.0)
            total += seconds
            calls_total += record.calls
            per_call[bool(record.computed)].append((step, seconds / record.calls))
        computed = [s for step, s in per_call[True] if step != 0] or [s for _, s in per_call[True]]
        cached = [s for _, s in per_call[False]]
        computed_s = sum(computed) / len(computed) if computed else None
        cached_s = sum(cached) / len(cached) if cached else None
        speedup = None
        if computed_s and total > 0:
            speedup = computed_s * calls_total / total
        ratio = (len(per_call[True]) + len(cached)) / max(len(per_call[True]), 1)
        text, note = shown_speedup(speedup, computed, len(cached), ratio)
        return sanitize({
            "computed_call_s": computed_s, "cached_call_s": cached_s,
            "estimated_speedup": speedup, "sampling_s": total,
            "speedup_text": text, "speedup_note": note,
        })

    def _progress(self, step: int, final: bool = False) -> None:
        """Sends step ``step`` once its decision is final. A reused step that finishes within
        MIN_INTERVAL_S of the last message waits for the next one (as ``earlier``): a fast model
        is not slowed by a message per step, a slow one still shows every step as it ends."""
        schedule = self.run.schedule
        if self.server is None or not 0 <= step < len(schedule.trace):
            return
        self.sent_steps.add(step)
        record = schedule.trace[step]
        now = time.perf_counter()
        if not (record.computed or final or now - self.last_send >= MIN_INTERVAL_S):
            self.unsent.append(step)
            return
        earlier, self.unsent = self.unsent, []
        self.last_send = now
        next_compute = schedule.next_compute if schedule.next_compute < schedule.n_steps else None
        computed = sum(1 for r in schedule.trace[: step + 1] if r.computed)
        text = f"step {step + 1}/{schedule.n_steps} · computed {computed}"
        if next_compute is not None and step + 1 < schedule.n_steps:
            text += f" · next compute at {next_compute + 1}"
        # built flat and sanitised where a float can be NaN/inf: this runs on every step; what
        # does not change during a run (the codebook, MoReg on/off) goes with the first only
        message = {
            "prompt_id": self.prompt_id, "node": self.node_id, "run": self.run_id,
            "step": step, "n_steps": schedule.n_steps,
            "record": _fields(record),
            "earlier": [_fields(schedule.trace[k]) for k in earlier],
            "computed_steps": computed, "next_compute": next_compute, "text": text,
        }
        if not self.sent_setup:
            self.sent_setup = True
            message.update(codebook=self.run.rule.summary_values(),
                           moreg=schedule.regularizer is not None, calibration=self.calibration)
        self.server.send_sync("adacache.progress", message, self.client_id)

    def _send(self, event: str, data: dict) -> None:
        if self.server is None:
            return
        self.server.send_sync(event, sanitize(data), self.client_id)
