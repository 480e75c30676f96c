"""``POST /adacache/whatif``: the schedule a codebook or a calibrated plan would give on a
recorded run, by the core's own rule (``adacache.predict_schedule``). The node's what-if asks
this route, so the browser holds no copy of the rule.

Body: ``{"trace": [...], "sigmas": [...], "positions": [...], "gap_distances": [[...], ...],
"codebook": {"thresholds": [...], "rates": [...], ...}}`` (the run summary's fields and a
codebook or calibrated plan as its ``to_dict`` writes it). Answer: ``{"computed": [steps],
"approximate": bool, "rates": [rate per step, null where reused]}``, or status 400 with
``{"error": ...}`` naming the bad entry.
"""

from __future__ import annotations

import asyncio
import math

from ..adacache import CodebookError, codebook_or_plan, predict_schedule
from .routes import add_route

ROUTE = "/adacache/whatif"
MAX_STEPS = 10000


def whatif(body) -> dict:
    """The route's answer to ``body``; ValueError (CodebookError) names a bad entry."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    codebook = body.get("codebook")
    if not isinstance(codebook, dict) or "thresholds" not in codebook or "rates" not in codebook:
        raise CodebookError('codebook must be an object with "thresholds" and "rates"')
    codebook = codebook_or_plan(codebook)
    sigmas = _numbers(body.get("sigmas"), "sigmas")
    if not 2 <= len(sigmas) <= MAX_STEPS + 1:
        raise ValueError(f"sigmas has {len(sigmas)} entries; need 2 to {MAX_STEPS + 1}")
    trace = body.get("trace") or []
    if not isinstance(trace, list) or not all(r is None or isinstance(r, dict) for r in trace):
        raise ValueError("trace must be a list of step records")
    positions = body.get("positions") or None
    if positions is not None:
        positions = _numbers(positions, "positions")
    gaps = body.get("gap_distances") or None
    if gaps is not None:
        if not isinstance(gaps, list):
            raise ValueError("gap_distances must be a list of rows")
        gaps = [
            _numbers(row or [], f"gap_distances step {step}", allow_none=True)
            for step, row in enumerate(gaps)
        ]
    prediction = predict_schedule(trace, codebook, sigmas, positions, gaps)
    return {"computed": prediction.computed, "approximate": prediction.approximate,
            "rates": prediction.rates}


def _numbers(values, name: str, allow_none: bool = False) -> list:
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list of numbers")
    out = []
    for i, value in enumerate(values):
        if value is None and allow_none:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise ValueError(f"{name} entry {i} ({value!r}) must be a finite number")
        out.append(float(value))
    return out


async def _whatif_route(request):
    from aiohttp import web

    try:
        body = await request.json()
        # planning a long schedule off the event loop
        answer = await asyncio.get_running_loop().run_in_executor(None, whatif, body)
    except ValueError as e:  # CodebookError and bad JSON included
        return web.json_response({"error": str(e)}, status=400)
    return web.json_response(answer)


add_route("POST", ROUTE, _whatif_route)
