"""Screenshots of the example workflows as an artist meets them, in the real ComfyUI frontend.

Starts a headless ComfyUI (CPU) with this pack and the demo on (ADACACHE_DEMO=1), opens its
frontend in headless Chromium (Debian's /usr/bin/chromium through the ``playwright`` package)
and saves:

* ``templates.png``     Workflow > Browse Templates, this pack's entry: titles and the demo first
* ``demo_workflow.png`` the demo workflow as it opens from there, its Note on the canvas
* ``demo_note.png``     that Note at 100 % zoom
* with ``--all``: ``example_<title>.png`` (whole graph in view) and ``example_<title>_note.png``
  for every example workflow

    .venv/bin/python scripts/screenshots_examples.py [--out docs/img] [--all]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from browser import close_dialogs, load_workflow
from headless_comfy import ROOT  # scripts/ is this script's sys.path[0]
from make_example_workflows import DEMO_TITLE, TEMPLATE_TITLES
from screenshots import frontend

PACK_DIR_NAME = "adacache"  # the folder a registry install gets (the registry's node id)
CARDS = '[data-testid="template-workflows-content"] [data-testid^="template-workflow-"]'


def fit_graph(page, left: int = 90, top: int = 140, pad: int = 30) -> None:
    """Scales and moves the canvas so every node (title bar included) is in view, clear of the
    side bar (left) and the tab and workflow-name bars (top)."""
    page.evaluate(
        """([left, top, pad]) => {
            const c = window.app.canvas, ns = window.app.graph._nodes;
            const th = window.LiteGraph.NODE_TITLE_HEIGHT;
            const x0 = Math.min(...ns.map(n => n.pos[0]));
            const y0 = Math.min(...ns.map(n => n.pos[1] - th));
            const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0]));
            const y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
            const r = c.canvas.getBoundingClientRect();
            const s = Math.min((r.width - left - pad) / (x1 - x0),
                               (r.height - top - pad) / (y1 - y0), 1);
            c.ds.scale = s;
            c.ds.offset = [(left - r.left) / s - x0, (top - r.top) / s - y0];
            c.setDirty(true, true);
        }""",
        [left, top, pad],
    )
    page.wait_for_timeout(600)


def note_close_up(page, path: Path, scale: float = 1.0) -> None:
    """The workflow's Note at ``scale``, alone in the picture."""
    box = page.evaluate(
        """(scale) => {
            const c = window.app.canvas, n = window.app.graph._nodes.find(n => n.type === 'Note');
            const th = window.LiteGraph.NODE_TITLE_HEIGHT, r = c.canvas.getBoundingClientRect();
            c.ds.scale = scale;
            c.ds.offset = [(120 - r.left) / scale - n.pos[0], (160 - r.top) / scale - n.pos[1]];
            c.setDirty(true, true);
            return {x: 110, y: 160 - th * scale - 10, width: n.size[0] * scale + 20,
                    height: (n.size[1] + th) * scale + 20};
        }""",
        scale,
    )
    page.wait_for_timeout(600)
    page.screenshot(path=str(path), clip=box)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--all", action="store_true", help="also every example workflow")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    with frontend(PACK_DIR_NAME, width=1400, height=900) as page:
        page.evaluate("() => window.app.extensionManager.command.execute("
                      "'Comfy.BrowseTemplates')")
        page.locator(f"[role=button]:has(span:text-is('{PACK_DIR_NAME}'))").click()
        page.locator(CARDS).first.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(1500)  # thumbnails
        dialog = page.locator(".p-dialog").first.bounding_box()
        page.screenshot(path=str(args.out / "templates.png"), clip=dialog)
        written.append("templates.png")
        first = page.locator(CARDS).first
        assert first.locator("h3").inner_text().strip() == DEMO_TITLE
        first.click()
        page.wait_for_function("() => window.app.graph._nodes.some("
                               "n => n.type === 'AdaCacheCalibrate')", timeout=30_000)
        close_dialogs(page)
        fit_graph(page)
        page.screenshot(path=str(args.out / "demo_workflow.png"))
        note_close_up(page, args.out / "demo_note.png")
        written += ["demo_workflow.png", "demo_note.png"]
        if args.all:
            for title in TEMPLATE_TITLES:
                workflow = json.loads((ROOT / "workflows" / f"{title}.json").read_text())
                load_workflow(page, workflow, settle_ms=800)  # closes the missing-models dialog
                fit_graph(page)
                name = "example_" + re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")
                page.screenshot(path=str(args.out / f"{name}.png"))
                note_close_up(page, args.out / f"{name}_note.png")
                written += [f"{name}.png", f"{name}_note.png"]
    for name in written:
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    sys.exit(main())
