"""The block-stack hooks of a run (``AdaCacheRun`` inherits them): what a model call does
with its blocks, per the plan ``begin_call`` made (``CallPlan``). On a compute call the blocks
run, the stack residual is kept and the metric residuals are measured (``stack_output``); on a
reused call the stored residual is added instead, or, when it does not fit, the call falls
back to computing (``_reuse``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .cache_store import chunks
from .families import WHOLE
from .schedule import NO_CACHE, StepRecord

COMPUTE, REUSE, PASSTHROUGH = "compute", "reuse", "passthrough"


@dataclass
class CallPlan:
    """What one model call does and why; made once by ``plan_call``, read by every hook."""

    mode: str
    reason: str
    stream_keys: list
    latent_shape: tuple[int, ...]
    record: StepRecord | None = None
    stack_input: dict[str, torch.Tensor] | None = None
    metric_residuals: dict[int, torch.Tensor] = field(default_factory=dict)
    tail_tokens: int = 0  # tokens after the video tokens (Family.tail_tokens), not frames
    log: dict = field(default_factory=dict)  # this call's entry in its step's call_plans
    token: object = None  # restores the context variable in end_call


def _locked(method):
    """``method`` run under its run's lock (calls from threads share one run)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class StackHooks:
    """The hooks the ComfyUI layer routes the stack through. They read the run's ``call``
    (this context's plan), ``family``, ``store``/``streams``, ``measurer``, ``recording``,
    ``schedule``, ``shard`` and ``lock``, and fall back through ``_force_compute``."""

    def block(self, position: int, args: dict, run_inner: Callable[[dict], dict]) -> dict:
        """One block of the stack (blocks mode)."""
        call = self.call
        if call is None or call.mode == PASSTHROUGH:
            return run_inner(args)
        family = self.family
        if call.mode == REUSE:
            if position != 0:
                return args  # the stored residual already holds what this block adds
            carried = family.carried(args)
            cached = self._reuse(call, carried)
            if cached is not None:
                if family.reuse_runs_first_block:
                    carried = {k: v.clone() for k, v in carried.items()}  # see below
                    run_inner(args)  # for the state it leaves (Family.reuse_runs_first_block)
                return family.with_carried(args, {k: v + cached[k] for k, v in carried.items()})
        # Blocks may add their output into their input tensors in place (ComfyUI's flux-style
        # blocks, LTX-Video: ``img += ...``), so what is kept of a block's input is a copy.
        if position == 0:
            call.stack_input = {k: v.clone() for k, v in family.carried(args).items()}
            with self.lock:
                self.stack_runs += 1
        before = family.metric_part(args).clone() if position in self.metric_positions else None
        out = run_inner(args)
        if before is not None:
            call.metric_residuals[position] = family.metric_part(out) - before
        # a split sequence: the stack output on this rank's shard, before the engine gathers
        last = family.output_module is None or self.shard.splits_sequence
        if last and position == self.n_blocks - 1:
            self.stack_output(out[family.hidden_key])
        return out

    def whole_model(self, x: torch.Tensor, run_inner: Callable[[], torch.Tensor]):
        """The diffusion model's forward (whole mode): reuse output - input on cached calls."""
        call = self.call
        if call is None or call.mode == PASSTHROUGH:
            return run_inner()
        if call.mode == REUSE:
            stream = self.streams.get(call.stream_keys[0])
            like = None if stream is None or stream.residual is None else stream.residual["out"]
            view = None if like is None else _crop(x, like.shape[1:])
            cached = self._reuse(call, {"out": view} if view is not None else None)
            if cached is not None:
                return view + cached["out"]
        with self.lock:
            self.stack_runs += 1
        out = run_inner()
        view = _crop(x, out.shape[1:])
        if view is None:  # output not a crop of the input: nothing we can cache
            return out
        call.stack_input = {"out": view}
        call.metric_residuals[0] = out - view
        self.stack_output(out)
        return out

    def _reuse(self, call: CallPlan, current: dict[str, torch.Tensor] | None) -> dict | None:
        """The reuse-or-fall-back step both reuse paths share: the stored residuals batched
        like ``current``, or None after turning the call into a compute call."""
        cached = None if current is None else self.store.residuals(call.stream_keys, current)
        if self.shard.agree(cached is None):  # split runs: one rank falls back, every rank does
            cached = None
        if cached is None:
            self._force_compute(call, NO_CACHE)
            return None
        self.check_interrupt()
        return cached

    @_locked
    def stack_output(self, hidden) -> None:
        """The hidden state after the whole stack (including any side-module hints)."""
        call = self.call
        if call is None or call.mode != COMPUTE or call.stack_input is None:
            return
        stack_input, call.stack_input = call.stack_input, None
        img = stack_input.get("img")
        img_tokens = img.shape[1] if img is not None and img.ndim == 3 else None
        if self.family.mode == WHOLE:
            outputs = {"out": hidden}
        else:
            outputs = self.family.split_output(hidden, stack_input)
        keys = call.stream_keys
        step = call.record.step
        self.store.keep(step, keys, {k: chunks(outputs[k] - stack_input[k], keys)
                                     for k in stack_input})
        residuals, call.metric_residuals = call.metric_residuals, {}
        streams = [(key, self.streams[key]) for key in keys]
        measures = self.measurer.measure_call(streams, residuals, step, call.latent_shape,
                                              img_tokens, call.tail_tokens, self.recording)
        self.schedule.measure_all(measures, step)  # the step's rate, fixed now

    def silenced_module(self, returns: str, run_inner: Callable, *args, **kwargs):
        """A module run between blocks (Family.silenced_modules): a no-op on cached evaluations,
        whose stored residual already holds what it added."""
        call = self.call
        if call is not None and call.mode == REUSE:
            state = args[0] if args else next(iter(kwargs.values()))
            if returns == "input":
                return state
            zero = torch.zeros((), dtype=state.dtype, device=state.device)
            return (zero, state) if returns == "addend_and_input" else zero
        return run_inner(*args, **kwargs)

def _crop(x: torch.Tensor, shape) -> torch.Tensor | None:
    """``x`` cut to ``[batch, *shape]`` from the start of each dim (extra channels, padding)."""
    if x.ndim != len(shape) + 1 or any(a < b for a, b in zip(x.shape[1:], shape, strict=True)):
        return None
    return x[(slice(None), *(slice(0, n) for n in shape))]


