"""Tier 3: the pack's widgets in the real ComfyUI frontend, in headless Chromium.

The frontend (comfyui-frontend-package 1.32.9 on the pinned host, 1.49.6 on ComfyUI 0.33) is
served by the real server of the session fixture; Debian's Chromium is driven by Playwright
(never `playwright install`). Node ids are compared as strings (numbers on 1.32.9, strings on
newer frontends).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from browser import launch, open_app
from test_e2e_server import sampling_branch, shared_nodes

SHOTS = Path(os.environ.get("ADACACHE_SCREENSHOTS", Path(__file__).parent / ".screenshots"))


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    # A first-time user gets the Templates dialog over the canvas; this user has seen it.
    status, _ = server.request("/settings/Comfy.TutorialCompleted", True)
    assert status == 200
    with sync_playwright() as p:
        browser, page = launch(p)
        page.console_lines = []
        page.script_urls = []
        page.on("console", lambda msg: page.console_lines.append(msg.text))
        page.on("request", lambda req: page.script_urls.append(req.url))
        open_app(page, server.url)
        yield page
        browser.close()


ADD_NODES = """() => {
    const g = window.app.graph;
    g.clear();
    if (g.state) g.state.lastNodeId = 100;  // keep clear of the API prompt's ids "1".."4"
    else g.last_node_id = 100;
    const apply = window.LiteGraph.createNode("AdaCacheApply");
    apply.pos = [80, 80];
    g.add(apply);
    const editor = window.LiteGraph.createNode("AdaCacheCodebookEditor");
    editor.pos = [520, 80];
    g.add(editor);
    window.app.canvas.ds.offset = [0, 0];
    window.app.canvas.ds.scale = 1;
    g.setDirtyCanvas(true, true);
    return {apply: apply.id, editor: editor.id};
}"""


def widget_value(page, node_id, name):
    return page.evaluate(
        "([id, name]) => window.app.graph.getNodeById(id).widgets.find(w => w.name === name)"
        ".value",
        [node_id, name],
    )


def test_plot_renders_and_shows_a_run_queued_over_http(page, server, object_info):
    ids = page.evaluate(ADD_NODES)
    schedule = page.locator("canvas.adacache-adacache_schedule")
    schedule.wait_for(state="visible", timeout=30_000)
    assert schedule.get_attribute("data-state") == "empty"
    # the Codebook Editor keeps its plain widgets (the what-if lives on AdaCache Apply's plot)
    assert widget_value(page, ids["editor"], "rates") == "6, 5, 4, 3, 2, 1"

    # A real run queued for the browser's client: the events reach the Apply node's plot.
    client_id = page.evaluate(
        "() => window.comfyAPI?.api?.api?.clientId ?? window.app.api?.clientId"
        " ?? sessionStorage.getItem('clientId')"
    )
    assert client_id
    apply_id = str(ids["apply"])
    assert apply_id not in {"1", "2", "3", "4"}  # the API prompt's own node ids
    prompt = {**shared_nodes(), **sampling_branch(object_info, apply_id=apply_id, preset="fast",
                                                  prefix="ui/fast")}
    status, body = server.request("/prompt", {"prompt": prompt, "client_id": client_id})
    assert status == 200, body
    entry = server.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline and state != "done":
        state = schedule.get_attribute("data-state")
        time.sleep(0.2)
    pattern = schedule.get_attribute("data-pattern")
    assert state == "done" and pattern.startswith("CC") and "." in pattern, pattern
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "adacache_widgets.png"))


def test_the_pack_script_loads_once(page):
    """The web folder is registered once (WEB_DIRECTORY), so the frontend imports the script
    once and never reports the extension as registered twice."""
    loads = [u for u in page.script_urls if u.split("?")[0].endswith("/adacache.js")]
    assert len(loads) == 1, loads
    twice = [line for line in page.console_lines if "already registered" in line]
    assert not twice, twice
