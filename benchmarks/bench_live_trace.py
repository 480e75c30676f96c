"""What the live trace costs a run: the demo model, events on vs off, interleaved (not a test).

Two real headless ComfyUI servers (CPU) with this pack run side by side; one is started with
``ADACACHE_LIVE_TRACE=0`` (no ``adacache.progress`` / ``adacache.trace`` events, no progress
text, no step timing), the other sends everything. A websocket client is connected to each, so
the "on" server really serialises and sends its events. Both get the same prompts: the demo
graph (AdaCache fast + MoReg, 30 euler steps) for every scene class and ``--seeds`` seeds, one
warm-up prompt each first, then ``--rounds`` rounds that alternate which server goes first.
Only one server samples at a time. A prompt's time is the server's own
``execution_start`` -> ``execution_success`` stamps (demo.py's ``prompt_seconds``), so model
loading (done in the warm-up and cached) and HTTP polling are left out.

Reported: the median over prompts of the per-pair ratio on/off, its interquartile range, and
the medians of each side. Writes benchmarks/results/bench_live_trace.md and .json.

    .venv/bin/python benchmarks/bench_live_trace.py [--seeds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402  (scripts/demo.py: the demo graph and its timing)
from headless_comfy import HeadlessComfy  # noqa: E402

SCENES = ["static", "slow drift", "fast motion", "camera pan"]
OUT = ROOT / "benchmarks" / "results"


class Listener:
    """Reads (and counts) the messages a server sends to one client id, in a thread."""

    def __init__(self, url: str):
        self.url, self.count, self.adacache = url, 0, 0
        self.timings: list[dict] = []  # adacache.trace's "timing" per run
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        assert self.ready.wait(30), f"no websocket at {url}"

    async def _run(self):
        import aiohttp

        async with aiohttp.ClientSession() as s, s.ws_connect(self.url) as ws:
            self.ready.set()
            async for msg in ws:
                self.count += 1
                if msg.type == aiohttp.WSMsgType.TEXT and '"adacache.' in msg.data[:40]:
                    self.adacache += 1
                    data = json.loads(msg.data)
                    if data["type"] == "adacache.trace":
                        self.timings.append(data["data"]["timing"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (less sensitive than wall time to other jobs
    on a shared machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(base: Path, live: bool) -> HeadlessComfy:
    previous = os.environ.get("ADACACHE_LIVE_TRACE")
    os.environ["ADACACHE_LIVE_TRACE"] = "1" if live else "0"
    try:
        srv = HeadlessComfy(base, custom_nodes={"adacache_bench": ROOT}, demo=True).start()
    finally:
        if previous is None:
            os.environ.pop("ADACACHE_LIVE_TRACE")
        else:
            os.environ["ADACACHE_LIVE_TRACE"] = previous
    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--off-first", action="store_true", help="start the 'off' server first")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adacache_bench_live_") as tmp:
        # started in the order given (--off-first swaps it: a check for start-order bias)
        sides = ("off", "on") if args.off_first else ("on", "off")
        servers = {side: start(Path(tmp) / side, side == "on") for side in sides}
        try:
            for srv in servers.values():
                srv.wait_ready()
            listeners = {k: Listener(f"ws://127.0.0.1:{s.port}/ws?clientId={s.client_id}")
                         for k, s in servers.items()}
            info = servers["on"].request("/object_info", timeout=120)[1]

            cpu = {}

            def run(side, scene, seed, tag):
                graph = demo.fill_defaults(
                    demo.demo_graph(scene, "adacache+moreg", seed, args.steps, 3.0, tag), info)
                before = cpu_seconds(servers[side].process.pid)
                seconds = demo.prompt_seconds(demo.run_prompt(servers[side], graph))
                cpu[side] = cpu_seconds(servers[side].process.pid) - before
                return seconds

            for side in servers:  # warm-up: model load, first-run costs
                run(side, "static", 999, f"warm_{side}")
            rows = []
            for r in range(args.rounds):
                for scene in SCENES:
                    for seed in range(args.seeds):
                        order = ("on", "off") if (r + seed) % 2 == 0 else ("off", "on")
                        # a fresh seed per round: ComfyUI would serve a cached result otherwise
                        s = 1000 * r + seed
                        t = {side: run(side, scene, s, f"r{r}_{side}") for side in order}
                        rows.append({"round": r, "scene": scene, "seed": s, "first": order[0],
                                     "on_s": t["on"], "off_s": t["off"],
                                     "ratio": t["on"] / t["off"], "on_cpu_s": cpu["on"],
                                     "off_cpu_s": cpu["off"]})
                        print(f"round {r} {scene:12s} seed {s:5d}: on {t['on']:.3f}s "
                              f"off {t['off']:.3f}s ratio {t['on'] / t['off']:.3f}", flush=True)
            events = {k: (v.count, v.adacache) for k, v in listeners.items()}
            own = [t["live_trace_s"] / t["sampling_s"] for t in listeners["on"].timings
                   if t.get("sampling_s")]
        finally:
            for srv in servers.values():
                with contextlib.suppress(Exception):
                    srv.stop()
    ratios = sorted(row["ratio"] for row in rows)
    q = statistics.quantiles(ratios, n=4)
    result = {
        "prompts_per_side": len(rows), "steps": args.steps,
        "median_ratio_on_over_off": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2],
        "median_on_s": statistics.median(r["on_s"] for r in rows),
        "median_off_s": statistics.median(r["off_s"] for r in rows),
        "cpu_ratio_on_over_off": sum(r["on_cpu_s"] for r in rows)
        / sum(r["off_cpu_s"] for r in rows),
        "load_average": os.getloadavg(),
        "own_time_share_median": statistics.median(own) if own else None,
        "own_time_share_max": max(own) if own else None,
        "websocket_messages": {k: {"all": c, "adacache": a} for k, (c, a) in events.items()},
        "rows": rows,
    }
    (OUT / "bench_live_trace.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# Live trace overhead (benchmarks/bench_live_trace.py)",
        "",
        f"Demo model, AdaCache fast + MoReg, {args.steps} euler steps, scenes {SCENES}, "
        f"{args.seeds} seed(s) x {args.rounds} round(s) = {len(rows)} prompts per side; "
        "two servers side by side (events on / ADACACHE_LIVE_TRACE=0), prompts interleaved and "
        "the order alternated; time = the server's execution_start -> execution_success.",
        "",
        "| | median prompt time | |",
        "| --- | --- | --- |",
        f"| events on | {result['median_on_s']:.3f} s | "
        f"{events['on'][1]} adacache.* messages received |",
        f"| events off | {result['median_off_s']:.3f} s | "
        f"{events['off'][1]} adacache.* messages received |",
        "",
        f"Per-prompt ratio on/off: median {result['median_ratio_on_over_off']:.3f} "
        f"(interquartile {q[0]:.3f}..{q[2]:.3f}).",
        f"Server CPU time (user + system, whole prompts incl. the HTTP polling of /history), "
        f"summed over all prompts, on/off: {result['cpu_ratio_on_over_off']:.3f}.",
        "Time the live-trace code itself spends on the sampling thread (LiveTrace.own_seconds, "
        f"in each adacache.trace) as a share of the run's sampling time: median "
        f"{result['own_time_share_median']:.2%}, max {result['own_time_share_max']:.2%} "
        "(the JSON encoding and socket send happen on the server's event-loop thread: in the "
        "CPU ratio, not here).",
        f"Machine load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
        "(2 cores shared with other jobs: wall times are noisy, the CPU ratio less so).",
        "",
    ]
    (OUT / "bench_live_trace.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
