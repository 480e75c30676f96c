"""Screenshots of the AdaCache widgets in the real ComfyUI frontend (for the README, docs/img/).

Starts a headless ComfyUI (CPU) with this pack, opens its frontend in headless Chromium
(Debian's /usr/bin/chromium through the ``playwright`` package), loads the demo workflow
(``make_example_workflows.DEMO_FILE``) and queues it as a user would (the frontend's own queue
call), then saves:

* ``docs/img/live_trace.png``  AdaCache Apply while the run is sampling (the plot growing)
* ``docs/img/trace_done.png``  the finished run: distances, thresholds, MoReg factor, strips
* ``docs/img/what_if.png``     after dragging a threshold and raising a band's rate

    .venv/bin/python scripts/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from browser import focus, launch, load_workflow, open_app
from headless_comfy import ROOT, HeadlessComfy  # scripts/ is this script's sys.path[0]
from make_example_workflows import DEMO_FILE

PACK_DIR_NAME = "adacache_screenshots"  # not the host's own custom_nodes name


@contextlib.contextmanager
def frontend(pack_dir: str = PACK_DIR_NAME, width: int = 1500, height: int = 950):
    """A page of the real frontend on a fresh headless ComfyUI (CPU) with this pack (in
    ``custom_nodes/<pack_dir>``) and the demo; the browser and the server are closed after."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="adacache_shots_") as tmp:
        server = HeadlessComfy(Path(tmp), custom_nodes={pack_dir: ROOT},
                               demo=True).start()
        try:
            print(f"ComfyUI ready after {server.wait_ready():.0f}s", flush=True)
            server.request("/settings/Comfy.TutorialCompleted", True)
            with sync_playwright() as p:
                browser, page = launch(p, width, height, scale=2)
                try:
                    open_app(page, server.url)
                    yield page
                finally:
                    browser.close()
        finally:
            server.stop()


def node_box(page, node_id: int, pad: int = 8) -> dict:
    """The node's rectangle on screen (title bar included), for page.screenshot(clip=...)."""
    return page.evaluate(
        """([id, pad]) => {
            const c = window.app.canvas, n = window.app.graph.getNodeById(id);
            const r = c.canvas.getBoundingClientRect(), s = c.ds.scale, o = c.ds.offset;
            const th = window.LiteGraph.NODE_TITLE_HEIGHT;
            return {x: r.left + (n.pos[0] + o[0]) * s - pad,
                    y: r.top + (n.pos[1] - th + o[1]) * s - pad,
                    width: n.size[0] * s + 2 * pad, height: (n.size[1] + th) * s + 2 * pad};
        }""",
        [node_id, pad],
    )


def queue(page) -> None:
    page.evaluate("() => window.app.queuePrompt(0, 1)")


def next_seed(page) -> None:
    page.evaluate("""() => { for (const n of window.app.graph._nodes) {
        const w = n.widgets?.find((w) => w.name === 'seed'); if (w) w.value += 1; } }""")


def plot_state(page, node_id: int) -> dict:
    return page.evaluate(
        "(id) => ({...window.app.graph.getNodeById(id).widgets"
        ".find(w => w.name === 'adacache_schedule').canvas.dataset})", node_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    workflow = json.loads((ROOT / "workflows" / DEMO_FILE).read_text())
    # the Apply that runs (not the one calibrating, when the demo shows calibrate -> run)
    apply_id = next(n["id"] for n in workflow["nodes"] if n["type"] == "AdaCacheApply"
                    and n["widgets_values"][0] != "calibrate")
    with frontend() as page:
        load_workflow(page, workflow, settle_ms=800)
        page.evaluate(  # the plot shown: selectors below use this class
            "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === "
            "'adacache_schedule').canvas.classList.add('adacache-target')", apply_id)
        focus(page, apply_id, 1.0)
        queue(page)  # the first run also loads the model
        page.wait_for_function(
            "() => document.querySelector('canvas.adacache-target')"
            "?.dataset.state === 'done'", timeout=120_000)
        next_seed(page)  # same seed: ComfyUI would serve the cached result
        queue(page)  # the second run: catch it half-way
        page.wait_for_function(
            "() => { const d = document.querySelector("
            "'canvas.adacache-target').dataset;"
            " return d.state === 'live' && Number(d.points) >= 14; }",
            timeout=120_000, polling=20)
        page.screenshot(path=str(args.out / "live_trace.png"),
                        clip=node_box(page, apply_id))
        page.wait_for_function(
            "() => document.querySelector('canvas.adacache-target')"
            "?.dataset.state === 'done'", timeout=120_000)
        page.wait_for_timeout(500)
        hover_step(page, 22)  # the tooltip: every field of one (computed) step
        box = node_box(page, apply_id)
        tip = page.evaluate("() => { const r = document.querySelector("
                            "'.adacache-tooltip').getBoundingClientRect();"
                            " return {x: r.right, y: r.bottom}; }")
        page.screenshot(path=str(args.out / "trace_done.png"), clip={
            **box, "width": max(box["width"], tip["x"] + 8 - box["x"]),
            "height": max(box["height"], tip["y"] + 8 - box["y"])})
        what_if(page)
        page.screenshot(path=str(args.out / "what_if.png"),
                        clip=node_box(page, apply_id))
        print(json.dumps(plot_state(page, apply_id), indent=1))
    for name in ("live_trace.png", "trace_done.png", "what_if.png"):
        print(f"wrote {args.out / name}")


def hover_step(page, step: int) -> None:
    canvas = page.locator("canvas.adacache-target")
    box = canvas.bounding_box()
    x = page.evaluate(STEP_X, step)
    page.mouse.move(box["x"] + x, box["y"] + box["height"] * 0.81)  # on the run strip
    page.wait_for_timeout(200)


def what_if(page) -> None:
    """Drags the first threshold down to the middle of the recorded distances, raises band 1."""
    canvas = page.locator("canvas.adacache-target")
    box = canvas.bounding_box()
    line_y = page.evaluate(THRESHOLD_Y, 0)
    target = page.evaluate(DISTANCE_Y, 0.6)
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + line_y)
    page.mouse.down()
    page.mouse.move(x, box["y"] + target, steps=8)
    page.mouse.up()
    page.wait_for_timeout(200)
    page.mouse.move(box["x"] + 5, box["y"] + 5)


# Screen offsets (CSS px from the canvas top) of a threshold line / a distance quantile, read
# from the drawn layout through the state the widget exposes.
STEP_X = """(t) => {
    const cv = document.querySelector('canvas.adacache-target');
    const k = cv.getBoundingClientRect().width / cv.clientWidth;
    return window.adacache.plotLayout(cv).x(t) * k;
}"""
THRESHOLD_Y = """(i) => {
    const cv = document.querySelector('canvas.adacache-target');
    const k = cv.getBoundingClientRect().height / cv.clientHeight;
    return window.adacache.plotLayout(cv).Y.y(Number(cv.dataset.thresholds.split(',')[i])) * k;
}"""
DISTANCE_Y = """(q) => {
    const cv = document.querySelector('canvas.adacache-target');
    const k = cv.getBoundingClientRect().height / cv.clientHeight;
    const L = window.adacache.plotLayout(cv);
    const ds = window.adacache.distances(cv).sort((a, b) => a - b);
    return L.Y.y(ds[Math.floor(q * (ds.length - 1))]) * k;
}"""


if __name__ == "__main__":
    sys.exit(main())
