"""Tier 3: what an artist sees on the canvas in the real frontend (issue 17, feedback items).

ComfyUI frontend 1.32.9 in headless Chromium against the session's real server (the browser
fixture of test_ui.py), on the pack's demo workflow and model. One run of the demo serves
several checks: no node covers another (after load, after the run, after each button), the
Calibrate node's result, the warnings in full, the overridden preset's label, the wall-clock
line and the shared colour code. Seeds 7501-7599 are this module's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import close_dialogs, focus, frames
from test_ui import SHOTS, page  # noqa: F401  (the browser fixture)
from test_ui_live import demo_workflow, load, node_overlaps, plot_data, queue_and_wait

ROOT = Path(__file__).resolve().parents[1]
SEEDS = """(seed) => { for (const n of window.app.graph._nodes) {
    const w = n.widgets?.find(w => w.name === 'seed'); if (w) w.value = seed; } }"""
APPLIES = """() => {
    const applies = window.app.graph._nodes.filter(n => n.type === 'AdaCacheApply');
    const preset = (n) => n.widgets.find(w => w.name === 'preset').value;
    return {cal: applies.find(n => preset(n) === 'calibrate').id,
            run: applies.find(n => preset(n) !== 'calibrate').id,
            calibrate: window.app.graph._nodes.find(n => n.type === 'AdaCacheCalibrate').id}; }"""
STATE = """(id) => window.adacache.stateOf(window.app.graph.getNodeById(id)).summary"""
# Whether every line of a node's DOM widget is shown: inside the widget's box, inside the node.
SHOWN = """([id, name]) => { const c = window.app.canvas, n = window.app.graph.getNodeById(id);
    const el = n.widgets.find(w => w.name === name).element, b = el.getBoundingClientRect();
    const cr = c.canvas.getBoundingClientRect(), s = c.ds.scale, o = c.ds.offset;
    const bottom = cr.top + (n.pos[1] + n.size[1] + o[1]) * s;
    const lines = el.children.length ? [...el.children] : [el];
    return b.height > 0 && b.bottom <= bottom + 1 && lines.every(l => {
        const r = l.getBoundingClientRect();
        return r.top >= b.top - 0.5 && r.bottom <= b.bottom + 0.5
            && l.scrollWidth <= l.clientWidth + 1 && l.scrollHeight <= l.clientHeight + 1; }); }"""


def overlaps(page):  # noqa: F811
    """Pairs of nodes whose rectangles (title bar and DOM widgets included) intersect."""
    return node_overlaps(page, settle_ms=250)[1]


def node_height(page, node_id):  # noqa: F811
    return page.evaluate("(id) => window.app.graph.getNodeById(id).size[1]", node_id)


def press(page, node_id, cls):  # noqa: F811
    page.evaluate("""([id, cls]) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule').element.querySelector('.' + cls).click()""",
                  [node_id, cls])
    page.wait_for_timeout(200)
    frames(page)


def shot(page, name):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


@pytest.fixture(scope="module")
def demo_run(page):  # noqa: F811
    """The demo workflow with '2 · run' switched to preset 'fast' (its connected calibrated
    plan overrides it), run once; the page stays on it."""
    load(page, demo_workflow())
    ids = page.evaluate(APPLIES)
    before = {"overlaps": overlaps(page),
              "heights": [node_height(page, ids["cal"]), node_height(page, ids["run"])],
              "label": page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
                  .find(w => w.name === 'preset').label ?? null""", ids["run"])}
    page.evaluate("""(id) => { const w = window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'preset'); w.value = 'fast'; w.callback?.('fast'); }""", ids["run"])
    frames(page)
    before["label_fast"] = page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'preset').label""", ids["run"])
    shot(page, "canvas_loaded.png")
    page.evaluate(SEEDS, 7501)
    data = queue_and_wait(page, ids["run"])
    page.wait_for_function("(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name"
                           " === 'adacache_result').element.dataset.result", arg=ids["calibrate"],
                           timeout=60_000)
    # the run's trace as the page got it (later tests may replace the graph)
    return {"ids": ids, "before": before, "data": data,
            "trace": page.evaluate(STATE, ids["run"])}


def test_a_node_with_no_run_is_compact_and_the_plot_unfolds_after_a_run(page, demo_run):  # noqa: F811
    ids = demo_run["ids"]
    compact = demo_run["before"]["heights"]
    assert all(h < 300 for h in compact), compact  # two lines instead of a 280 px empty plot
    full = [node_height(page, ids["cal"]), node_height(page, ids["run"])]
    assert all(h > c + 200 for h, c in zip(full, compact, strict=True)), (compact, full)
    focus(page, ids["run"], at=(120, 140))
    press(page, ids["run"], "adacache-fold")
    assert plot_data(page, ids["run"])["folded"] == "true"
    assert node_height(page, ids["run"]) < compact[1] + 40
    shot(page, "canvas_folded.png")
    # a node put in the space the fold freed is moved down when the plot unfolds, not covered
    note = page.evaluate("""(id) => { const a = window.app.graph.getNodeById(id);
        const n = window.LiteGraph.createNode('Note'); n.size = [a.size[0], 80];
        n.pos = [a.pos[0], a.pos[1] + a.size[1] + 60]; window.app.graph.add(n);
        return {id: n.id, y: n.pos[1]}; }""", ids["run"])
    assert overlaps(page) == []
    press(page, ids["run"], "adacache-fold")
    assert plot_data(page, ids["run"])["folded"] == "false"
    assert node_height(page, ids["run"]) == pytest.approx(full[1], abs=1)
    moved = page.evaluate("(id) => window.app.graph.getNodeById(id).pos[1]", note["id"])
    assert moved > note["y"] + 150 and overlaps(page) == []
    page.evaluate("(id) => window.app.graph.remove(window.app.graph.getNodeById(id))", note["id"])


def test_no_node_covers_another_after_load_a_run_and_every_button(page, demo_run):  # noqa: F811
    ids = demo_run["ids"]
    assert demo_run["before"]["overlaps"] == []
    after_run = overlaps(page)
    shot(page, "canvas_after_run.png")
    assert after_run == [], after_run
    for node in (ids["cal"], ids["run"]):
        for button in ("adacache-fold", "adacache-fold", "adacache-reset"):
            press(page, node, button)
            assert overlaps(page) == [], (node, button)
    # Use this codebook on the plan-fed Apply, confirmed: a Codebook Editor is added in free
    # space (it used to land on the demo's note), and on the calibrating one (its own editor)
    answers = []
    page.once("dialog", lambda d: (answers.append(d.message), d.accept()))
    press(page, ids["run"], "adacache-use")
    assert answers, "no confirmation before replacing the plan"
    press(page, ids["cal"], "adacache-use")
    sources = page.evaluate("""(ids) => ids.map((id) => { const g = window.app.graph;
        const n = g.getNodeById(id), link = n.inputs.find(i => i.name === 'codebook').link;
        const l = g.links[link] ?? g.getLink?.(link); return g.getNodeById(l.origin_id).type; })""",
                            [ids["run"], ids["cal"]])
    assert sources == ["AdaCacheCodebookEditor"] * 2
    result = overlaps(page)
    shot(page, "canvas_after_use.png")
    assert result == [], result


def test_calibrate_shows_its_result(page, demo_run):  # noqa: F811
    focus(page, demo_run["ids"]["calibrate"], at=(120, 140))
    text = page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_result').element.innerText""", demo_run["ids"]["calibrate"])
    result = json.loads(page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_result').element.dataset.result""",
                                      demo_run["ids"]["calibrate"]))
    lines = text.splitlines()
    fitted = f"plan fitted on {result['runs']} recorded run(s) of 30 steps"
    assert lines[0].startswith(fitted), lines
    assert f"saved as '{result['name']}'" in lines[1], lines
    mean = sum(result["predicted_computed"]) / len(result["predicted_computed"])
    assert re.search(rf"predicted: (about )?{round(mean)}/30 steps computed", lines[2]), lines
    # every line shown in full, inside the node, and not saved with the workflow
    assert page.evaluate(SHOWN, [demo_run["ids"]["calibrate"], "adacache_result"])
    saved = page.evaluate("() => window.app.graph.serialize()")
    (node,) = [n for n in saved["nodes"] if str(n["id"]) == str(demo_run["ids"]["calibrate"])]
    assert len(node["widgets_values"]) == 4, node["widgets_values"]  # speed, moreg, name, runs
    shot(page, "canvas_calibrate_result.png")


def test_warnings_are_shown_in_full_and_hovering_shows_them(page, demo_run):  # noqa: F811
    run = demo_run["ids"]["run"]
    focus(page, run, at=(120, 140))
    warnings = page.evaluate(STATE, run)["warnings"]
    assert any("replaces preset 'fast'" in w for w in warnings), warnings
    data = plot_data(page, run)
    lines = json.loads(data["warningLines"])
    # every word of every warning is drawn, none cut with "…"
    drawn = " ".join(line.replace("⚠", "").strip() for line in lines)
    assert drawn.split() == " ".join(warnings).split()
    assert len(lines) > len(warnings)  # a long one wrapped
    width = page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule').canvas.clientWidth""", run)
    assert float(data["width"]) == width > 400
    assert 0 < float(data["warningWidth"]) <= width - 16
    # hovering the second line of the first warning shows that warning
    spot = page.evaluate("""(id) => { const w = window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule'); const b = window.adacache
        .plotLayout(w.canvas).warnings[1]; const r = w.canvas.getBoundingClientRect();
        const k = r.height / w.canvas.clientHeight;
        return {x: r.left + 60 * k, y: r.top + (b.y0 + b.y1) / 2 * k, index: b.index}; }""", run)
    page.mouse.move(spot["x"], spot["y"])
    page.wait_for_timeout(150)
    tip = page.locator(".adacache-tooltip").inner_text()
    assert tip == f"⚠ {warnings[spot['index']]}"
    shot(page, "canvas_warning_hover.png")
    page.mouse.move(5, 5)


def test_an_overridden_preset_says_so(page, demo_run):  # noqa: F811
    before = demo_run["before"]
    assert before["label"] is None  # custom: it uses the connected codebook
    assert before["label_fast"] == "preset (overridden by plan)"  # AdaCache Calibrate's
    # the run indeed used the connected plan, not 'fast'
    assert page.evaluate(STATE, demo_run["ids"]["run"])["codebook"].startswith("calibrated plan")


def test_the_wall_clock_line_follows_the_run_timings(page, demo_run):  # noqa: F811
    from comfyui_adacache.nodes.live_trace import shown_speedup

    for node in (demo_run["ids"]["cal"], demo_run["ids"]["run"]):
        summary = page.evaluate(STATE, node)
        header = plot_data(page, node)["header"].splitlines()[1]
        timing = summary["timing"]
        if summary["calibration"]:  # nothing reused: nothing to estimate
            assert timing["speedup_text"] is None and "wall-clock" not in header
        elif timing["speedup_text"]:
            assert header.startswith(f"wall-clock {timing['speedup_text']} faster"), header
        else:
            assert header == f"wall-clock speedup: not estimated ({timing['speedup_note']})"
    # the rule itself, on measured-looking call times
    steady = [0.100, 0.102, 0.099, 0.101, 0.100, 0.098, 0.101, 0.100]
    assert shown_speedup(2.437, steady, 20, 3.0) == ("≈2.45x", None)
    assert shown_speedup(2.43, steady[:2], 1, 3.0)[0] is None  # a 4-step run: not shown
    noisy = [0.05, 0.2, 0.08, 0.4, 0.1]
    text, note = shown_speedup(1.9, noisy, 20, 3.0)
    assert text is None and "vary" in note
    assert shown_speedup(3.4, steady, 20, 3.0)[0] is None  # above the step ratio: noise


def test_the_plot_and_the_report_share_one_colour_code(page, demo_run):  # noqa: F811
    from comfyui_adacache.nodes import report

    shared = json.loads((ROOT / "web" / "colors.json").read_text())
    js = page.evaluate("() => window.adacache.COLORS")
    for key in ("computed", "reused", "distance", "factor", "warn"):
        assert js[key] == shared[key], key
    assert js["thresholds"][0] == shared["threshold"]
    # the Report of this run draws its computed steps in that green, its reused ones in grey
    summary = page.evaluate(STATE, demo_run["ids"]["run"])
    im = report.render_report(summary).convert("RGB")
    colours = {c for _, c in im.getcolors(1 << 20)}
    green = tuple(int(shared["computed"][i:i + 2], 16) for i in (1, 3, 5))
    assert green == report.COMPUTED
    assert report.COMPUTED in colours and report.REUSED in colours


def test_an_editor_names_a_saved_plan_a_plan(page, demo_run):  # noqa: F811
    """A Codebook Editor that picks the plan AdaCache Calibrate saved says it uses a calibrated
    plan (the route's typed kind), not a codebook, and the whole line is shown."""
    result = json.loads(page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_result').element.dataset.result""",
                                      demo_run["ids"]["calibrate"]))
    editor = page.evaluate("""(name) => { const g = window.app.graph;
        const n = window.LiteGraph.createNode('AdaCacheCodebookEditor'); n.pos = [100, 1400];
        g.add(n); const w = n.widgets.find(w => w.name === 'saved');
        w.value = name; w.callback?.(name); g.setDirtyCanvas(true, true); return n.id; }""",
                           result["name"])
    check = """(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_check').element.textContent"""
    page.wait_for_function(f"(id) => ({check})(id).includes('calibrated plan')", arg=editor,
                           timeout=10_000)
    text = page.evaluate(check, editor)
    assert text.startswith(f"✓ uses the saved calibrated plan '{result['name']}' (3x)"), text
    label = page.evaluate("""([id, name]) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'saved').options.getOptionLabel(name)""", [editor, result["name"]])
    assert label == f"{result['name']} · plan 3x"  # the 'saved' list names it a plan too
    focus(page, editor)
    assert page.evaluate(SHOWN, [editor, "adacache_check"]), text
    shot(page, "editor_saved_plan.png")
    page.evaluate("(id) => window.app.graph.remove(window.app.graph.getNodeById(id))", editor)


# --- runs of their own -------------------------------------------------------------------------


def test_an_interrupted_run_is_marked_and_gives_no_advice(page):  # noqa: F811
    from comfyui_adacache.adacache import format_summary

    load(page, demo_workflow())
    ids = page.evaluate(APPLIES)
    page.evaluate(SEEDS, 7511)
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function("""(id) => { const d = window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule').canvas.dataset;
        return d.state === 'live' && Number(d.points) >= 4; }""", arg=ids["cal"], timeout=240_000)
    page.evaluate("() => fetch('/interrupt', {method: 'POST'})")
    page.wait_for_function("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule').canvas.dataset.state === 'interrupted'""",
                           arg=ids["cal"], timeout=60_000)
    frames(page)
    data = plot_data(page, ids["cal"])
    summary = page.evaluate(STATE, ids["cal"])
    assert summary["interrupted"] and summary["steps_reached"] < 30
    assert data["header"].startswith(f"interrupted at step {summary['steps_reached']} of 30")
    assert summary["calibrated_codebook"] is None and summary["calibration_sample"] is None
    assert [w.split(":")[0] for w in summary["warnings"]] == [
        f"interrupted at step {summary['steps_reached']} of 30"]
    assert data["predicted"] == ""  # no what-if from a partial run
    # said once on the node: in the header, not again as a warning line below it
    shown = data["header"] + "\n" + "\n".join(json.loads(data["warningLines"]))
    assert shown.count("interrupted") == 1, shown
    assert page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule').element
        .querySelector('.adacache-use').disabled""", ids["cal"])
    log = format_summary(summary)  # the lines the server logged for this run
    assert "calibrated to this run" not in log and "interrupted" in log
    shot(page, "canvas_interrupted.png")


SMALL = ["AdaCacheApply", "AdaCacheCodebookEditor", "AdaCacheMoRegSettings", "KSampler"]


def saved_too_small(types) -> dict:
    """A workflow of ``types`` in a row, each saved 40 px tall (less than its widgets need) with
    a Note saved right below it."""
    import make_example_workflows as ex

    widgets = {"AdaCacheApply": ex.apply_widgets("fast"), "KSampler": [1, "fixed", 4, 3.0,
               "euler", "simple", 1.0], "AdaCacheCodebookEditor": ["0.1, 1", "2, 1",
               "(use the values above)"], "AdaCacheMoRegSettings": list(ex.MOREG_DEFAULTS)}
    g = ex.Graph()
    for i, type_ in enumerate(types):
        g.add(type_, (40 + 520 * i, 60), widgets[type_], size=(460, 40))
        g.add("Note", (40 + 520 * i, 160), [f"below {type_}"], size=(300, 80))
    workflow = g.to_json("saved too small")
    for node in workflow["nodes"]:  # to_json spaces nodes out: put the notes back
        if node["type"] == "Note":
            node["pos"][1] = 160
    return workflow


def test_a_node_saved_smaller_than_its_widgets_makes_room_on_load(page):  # noqa: F811
    """The frontend grows a node saved smaller than its widgets as the workflow loads; the nodes
    it would cover move down (web/layout.js roomAfterLoad), in a workflow with this pack's
    nodes. A workflow without them is left as saved."""
    load(page, saved_too_small(SMALL))
    nodes, pairs = node_overlaps(page)
    page.evaluate("() => { const c = window.app.canvas; c.ds.scale = 0.6; c.ds.offset = [110, 140];"
                  " c.setDirty(true, true); }")
    frames(page)
    shot(page, "canvas_saved_too_small.png")
    assert pairs == [], pairs
    heights = {n["type"]: n["rect"][3] for n in nodes if n["type"] != "Note"}
    assert all(h > 40 + 30 for h in heights.values()), heights  # each grew to its widgets
    notes = [n["rect"][1] for n in nodes if n["type"] == "Note"]
    assert len(notes) == len(SMALL)

    load(page, saved_too_small(["KSampler"]))
    core = page.evaluate("() => window.app.graph._nodes.map(n => [n.type, n.pos[1]])")
    assert ["Note", 160] in core, core  # not moved: no AdaCache node in this workflow


EDITOR_CASES = [
    ("0.1, 0.2, 1", "3, 2, 1"),
    ("0.2, 0.1, 1", "3, 2, 1"),
    ("0.08573, 0.01531, 0.2202, 0.2874, 1", "5, 4, 3, 2, 1"),
    ("0.1, nan, 1", "3, 2, 1"),
    ("0.1, 0.2, 1", "3, 0, 1"),
    ("0.1, 0.2, 1", "3, 2.5, 1"),
    ("0.1, x, 1", "3, 2, 1"),
    ("0.1, 0.2", "3, 2, 1"),
    ("0.1,, 1", "3, 2, 1"),
    ("-0.1, 0.2, 1", "3, 2, 1"),
    ("thresholds: 0.03, 1 | rates: 6, 1", ""),
    ("", ""),
]


def test_the_codebook_editor_validates_as_you_type(page):  # noqa: F811
    """Each edit shows at once whether the fields make a codebook; the node's message names the
    same entry as the error the Editor would raise when queued (adacache/codebook.py)."""
    from comfyui_adacache.adacache import Codebook, CodebookError

    close_dialogs(page)
    editor = page.evaluate("""() => { const g = window.app.graph; g.clear();
        const n = window.LiteGraph.createNode('AdaCacheCodebookEditor'); n.pos = [100, 100];
        g.add(n); const c = window.app.canvas; c.ds.scale = 1.5; c.ds.offset = [0, 0];
        g.setDirtyCanvas(true, true); return n.id; }""")
    for thresholds, rates in EDITOR_CASES:
        page.evaluate("""([id, t, r]) => { const n = window.app.graph.getNodeById(id);
            for (const [name, v] of [['thresholds', t], ['rates', r]]) {
                const w = n.widgets.find(w => w.name === name);
                w.value = v; w.callback?.(v); } }""",
                      [editor, thresholds, rates])
        shown = page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
            .find(w => w.name === 'adacache_check').element.dataset.error""", editor)
        try:
            Codebook.from_text(thresholds, rates)
            expected = ""
        except CodebookError as e:
            expected = str(e)
        assert bool(shown) == bool(expected), (thresholds, rates, shown, expected)
        assert re.split(r"[(:]", shown)[0] == re.split(r"[(:]", expected)[0], (shown, expected)
        frames(page)
        assert page.evaluate(SHOWN, [editor, "adacache_check"]), shown  # all of it
        if thresholds == "0.2, 0.1, 1":
            shot(page, "editor_check_error.png")
    # the check is not saved with the workflow: the fields and 'saved' only
    saved = page.evaluate("() => window.app.graph.serialize()")
    (node,) = saved["nodes"]
    assert len(node["widgets_values"]) == 3, node["widgets_values"]


# Whether a node's plot canvas is drawn inside the node (screen pixels).
PLOT_INSIDE = """(id) => { const c = window.app.canvas, n = window.app.graph.getNodeById(id);
    const cr = c.canvas.getBoundingClientRect(), s = c.ds.scale, o = c.ds.offset;
    const r = n.widgets.find(w => w.name === 'adacache_schedule').element
        .querySelector('canvas').getBoundingClientRect();
    return r.height > 0 && r.top >= cr.top + (n.pos[1] + o[1]) * s
        && r.bottom <= cr.top + (n.pos[1] + n.size[1] + o[1]) * s + 1; }"""
TOOLBAR_CLIPPED = """(id) => { const n = window.app.graph.getNodeById(id);
    const bar = n.widgets.find(w => w.name === 'adacache_schedule').element
        .querySelector('canvas').nextElementSibling;
    const one = bar.querySelector('button').getBoundingClientRect().height;
    return [...bar.children].filter(e => e.scrollWidth > e.clientWidth + 1
        || e.getBoundingClientRect().height > one + 1).map(e => e.textContent); }"""
RAYLIGHT_GRAPH = """() => { const g = window.app.graph, L = window.LiteGraph; g.clear();
    const add = (type, pos) => { const n = L.createNode(type); n.pos = pos; g.add(n); return n; };
    const apply = add('AdaCacheApplyRaylight', [60, 60]);
    const editor = add('AdaCacheCodebookEditor', [60, 60 + apply.size[1] + 60]);
    editor.connect(0, apply, apply.inputs.findIndex(i => i.name === 'codebook'));
    const report = add('AdaCacheReportRaylight', [apply.size[0] + 120, 60]);
    const calibrate = add('AdaCacheCalibrateRaylight', [apply.size[0] + 120, 200]);
    apply.connect(0, calibrate, 0);  // the actors go on to Calibrate (Raylight)
    g.setDirtyCanvas(true, true);
    return {apply: apply.id, width: apply.size[0],
            widgets: apply.widgets.map(w => w.name)}; }"""


def test_the_raylight_apply_gets_the_plot_and_overlaps_nothing(page, demo_run):  # noqa: F811
    """AdaCache Apply (Raylight) shows rank 0's run (relayed to the browser by nodes/raylight.py
    as an ordinary adacache.trace event of the node): it gets the same plot widget as AdaCache
    Apply, room for it, and draws a trace sent for it (the demo run's, as this page got it)."""
    trace = demo_run["trace"]
    close_dialogs(page)
    made = page.evaluate(RAYLIGHT_GRAPH)
    assert "adacache_schedule" in made["widgets"], made
    assert made["width"] >= 440, made  # the plot's axes and labels
    assert overlaps(page) == []  # the node grew to its plot's header, the Editor made room
    compact = node_height(page, made["apply"])
    page.evaluate("""([detail, id]) => (window.app.api ?? window.comfyAPI.api.api).dispatchEvent(
        new CustomEvent('adacache.trace', {detail: {...detail, node: String(id), prompt_id: null,
                                                    run: 'raylight'}}))""",
                  [trace, made["apply"]])
    frames(page)
    shown = page.evaluate(STATE, made["apply"])
    assert shown["pattern"] == trace["pattern"]
    assert node_height(page, made["apply"]) > compact + 200  # the plot unfolded
    assert overlaps(page) == []  # and the Editor below moved down
    page.evaluate("() => { const c = window.app.canvas; c.ds.offset = [100, 120];"
                  " c.setDirty(true, true); }")
    frames(page)
    shot(page, "canvas_raylight_apply.png")
    assert page.evaluate(PLOT_INSIDE, made["apply"])
    assert page.evaluate(TOOLBAR_CLIPPED, made["apply"]) == []  # no label cut or wrapped
    # "Use this codebook" keeps a calibrating Apply (Raylight) calibrating: its actors go on to
    # Calibrate (Raylight), which needs the calibrate preset
    page.evaluate("""(id) => { const w = window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'preset'); w.value = 'calibrate'; w.callback?.('calibrate'); }""",
                  made["apply"])
    press(page, made["apply"], "adacache-use")
    assert page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'preset').value""", made["apply"]) == "calibrate"
