"""The pack's example workflows as an artist finds them: in ComfyUI's template browser, and
their Notes on the canvas.

Frontend 1.32.9 in headless Chromium against the session's real server (test_ui.py's browser
fixture). The frontend titles a pack's template by its file name and describes it by the same
name, and the server lists the files in disk order; the workflows are named with short human
titles (scripts/make_example_workflows.py) and web/templates.js puts the runnable demo first.
What the Notes say is checked against behaviour in test_example_notes.py; here, that all of it
is visible.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import comfy_server
import pytest
from browser import close_dialogs
from make_example_workflows import DEMO_TITLE, TEMPLATE_TITLES  # scripts/ is on sys.path
from test_ui import SHOTS, page  # noqa: F401  (the browser fixture)

MODULE = comfy_server.PACK_LINK  # the pack's folder in the test server's custom_nodes
CARDS = '[data-testid="template-workflows-content"] [data-testid^="template-workflow-"]'
CARD_TEXT = f"""() => [...document.querySelectorAll('{CARDS}')].map((c) => {{
    const h = c.querySelector('h3'), p = c.querySelector('p');
    return {{title: h?.textContent.trim(), description: p?.textContent.trim(),
             clipped: h ? h.scrollWidth > h.clientWidth + 1 : null,
             width: h?.clientWidth}};
}})"""


def open_pack_templates(page):  # noqa: F811
    """Workflow > Browse Templates, then this pack's entry under Extensions."""
    close_dialogs(page)
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    page.locator(f"[role=button]:has(span:text-is('{MODULE}'))").click()
    page.locator(CARDS).first.wait_for(state="visible", timeout=30_000)
    page.wait_for_timeout(300)
    return page.evaluate(CARD_TEXT)


def set_sort(page, value: str):  # noqa: F811
    page.evaluate("(v) => window.app.extensionManager.setting.set('Comfy.Templates.SortBy', v)",
                  value)


def test_template_titles_are_human_and_the_demo_comes_first(page, server):  # noqa: F811
    status, listed = server.request("/workflow_templates")
    assert status == 200 and sorted(listed[MODULE]) == sorted(TEMPLATE_TITLES)
    sort = page.evaluate("() => window.app.extensionManager.setting.get('Comfy.Templates.SortBy')")
    try:
        for order in (sort, "alphabetical"):  # the default ('newest') and A-Z
            set_sort(page, order)
            cards = open_pack_templates(page)
            titles = [c["title"] for c in cards]
            assert titles[0] == DEMO_TITLE, (order, titles)
            assert sorted(titles) == sorted(TEMPLATE_TITLES)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"templates_{order}.png"))
            close_dialogs(page)
    finally:
        set_sort(page, sort)
    for card in cards:
        title = card["title"]
        # a title, not a file name: words with spaces, no underscores or extension, not the
        # pack's file prefix, capitalised
        assert " " in title and "_" not in title and not title.endswith(".json"), title
        assert not title.lower().startswith("adacache_") and title[0].isupper(), title
        assert re.fullmatch(r"[A-Za-z0-9 .,()-]+", title), title  # safe in paths and URLs
        assert card["description"], title


def test_template_titles_fit_their_cards(page):  # noqa: F811
    """A title cut with '…' is a clipped text bug: every title fits its card on one line, at
    the fixture's window and at a small laptop's."""
    size = page.viewport_size
    try:
        for width, height in ((size["width"], size["height"]), (1024, 700)):
            page.set_viewport_size({"width": width, "height": height})
            cards = open_pack_templates(page)
            clipped = [(c["title"], c["width"]) for c in cards if c["clipped"]]
            if clipped:
                page.screenshot(path=str(SHOTS / f"templates_clipped_{width}.png"))
            assert not clipped, (width, clipped)
            close_dialogs(page)
    finally:
        page.set_viewport_size(size)


def test_every_template_and_thumbnail_is_served_and_the_demo_opens(page, server):  # noqa: F811
    for title in TEMPLATE_TITLES:
        for ext in (".json", ".jpg"):
            path = f"/api/workflow_templates/{MODULE}/{urllib.parse.quote(title + ext)}"
            status, _ = (server.request(path) if ext == ".json" else _head(server, path))
            assert status == 200, (title, ext, status)
    open_pack_templates(page)
    card = page.locator(CARDS).first
    assert card.locator("h3").inner_text().strip() == DEMO_TITLE
    card.click()
    page.wait_for_function(
        "() => window.app.graph._nodes.some(n => n.type === 'AdaCacheCalibrate')",
        timeout=30_000)
    page.wait_for_timeout(500)
    # the demo's nodes are registered on this server (ADACACHE_DEMO=1): nothing is missing
    assert page.locator(".p-dialog-mask").count() == 0
    titles = page.evaluate("() => window.app.graph._nodes.map(n => n.title)")
    assert "About this demo" in titles and "AdaCache Demo Scene" in titles


def _head(server, path: str):
    import urllib.request

    with urllib.request.urlopen(server.url + path, timeout=30) as r:
        return r.status, r.headers.get("Content-Type")


WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))
NOTE_TEXT = """() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(
    () => resolve(window.app.graph._nodes.filter((n) => n.type === 'Note').map((n) => {
        const el = n.widgets?.find((w) => w.element)?.element;
        return {title: n.title, shown: !!el && el.isConnected && el.getClientRects().length > 0,
                hidden_px: el ? el.scrollHeight - el.clientHeight : null,
                text: el?.value?.length ?? 0};
    })))))"""


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_every_note_shows_all_its_text(page, path):  # noqa: F811
    """A Note whose text needs scrolling hides part of what it says: clipped text."""
    close_dialogs(page)
    page.evaluate("(wf) => window.app.loadGraphData(wf)", json.loads(path.read_text()))
    page.wait_for_timeout(600)
    close_dialogs(page)  # the missing-models dialog of an example workflow
    page.evaluate("""() => { const c = window.app.canvas;
        const n = window.app.graph._nodes.find((n) => n.type === 'Note');
        c.ds.scale = 1; c.ds.offset = [120 - n.pos[0], 160 - n.pos[1]];
        c.setDirty(true, true); }""")
    page.wait_for_timeout(300)
    notes = page.evaluate(NOTE_TEXT)
    assert notes, "no Note on the canvas"
    for note in notes:
        assert note["shown"] and note["text"] > 100, note
        if note["hidden_px"] > 1:
            page.screenshot(path=str(SHOTS / f"note_clipped_{path.stem}.png"))
        assert note["hidden_px"] <= 1, note


def test_demo_has_no_overlapping_nodes_after_a_run(page):  # noqa: F811
    """After a run each AdaCache Apply shows its plot (a compact node unfolds); '1 · calibrate'
    never covers '2 · run'."""
    from test_ui_live import demo_workflow, load, node_overlaps, queue_and_wait

    load(page, demo_workflow())
    ids = page.evaluate("() => window.app.graph._nodes.filter(n => n.type === 'AdaCacheApply')"
                        ".map(n => n.id)")
    queue_and_wait(page, ids[-1])
    _, overlaps = node_overlaps(page)
    if overlaps:
        page.screenshot(path=str(SHOTS / "overlap_demo_after_run.png"))
    assert not overlaps, overlaps
