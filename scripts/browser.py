"""The real ComfyUI frontend in headless Chromium: Debian's ``/usr/bin/chromium`` driven by the
``playwright`` package (never ``playwright install``). Shared by the screenshot scripts and the
UI tests (``tests/test_ui*.py``; ``scripts/`` is on their ``sys.path``)."""

from __future__ import annotations

import time

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def launch(p, width: int = 1400, height: int = 900, scale: float = 1):
    """A headless browser (``p``: a started ``sync_playwright()``) and an empty page."""
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    page = browser.new_page(viewport={"width": width, "height": height},
                            device_scale_factor=scale)
    return browser, page


def open_app(page, url: str) -> None:
    """Opens the frontend at ``url`` and waits until the graph and this pack are loaded."""
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_function(
        "() => window.app && window.app.graph && window.LiteGraph && window.adacache",
        timeout=120_000)
    close_dialogs(page)


def close_dialogs(page) -> None:
    """Closes whatever dialog is open over the canvas (a fresh profile's Templates dialog, an
    example's missing-models dialog); fails naming a dialog that stays."""
    for _ in range(20):
        mask = page.locator(".p-dialog-mask")
        if mask.count() == 0:
            return
        close = page.locator(
            ".p-dialog-mask button[aria-label='Close'], .p-dialog-mask button:has(.pi-times)"
        )
        if close.count():
            close.first.click()
        else:
            page.keyboard.press("Escape")
        time.sleep(0.5)
    raise AssertionError(f"a dialog stays open over the canvas: {mask.first.inner_text()[:200]!r}")


def frames(page) -> None:
    """Waits two animation frames: what was changed is drawn."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def load_workflow(page, workflow: dict, settle_ms: int = 600) -> None:
    """Loads a UI-format workflow as the Open menu does, closes the dialogs it opens."""
    page.evaluate("(wf) => window.app.loadGraphData(wf)", workflow)
    page.wait_for_timeout(settle_ms)
    close_dialogs(page)
    frames(page)


def focus(page, node_id, scale: float = 1.0, at: tuple[int, int] = (320, 200)) -> None:
    """Puts the node's corner at ``at`` (canvas pixels) at ``scale``."""
    page.evaluate(
        """([id, scale, at]) => {
            const c = window.app.canvas, n = window.app.graph.getNodeById(id);
            c.ds.scale = scale;
            c.ds.offset = [at[0] / scale - n.pos[0], at[1] / scale - n.pos[1]];
            c.setDirty(true, true);
        }""",
        [node_id, scale, list(at)],
    )
    page.wait_for_timeout(300)
    frames(page)
