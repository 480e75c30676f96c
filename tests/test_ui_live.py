"""Tier 3: the live trace, the what-if and the example workflows in the real frontend.

ComfyUI frontend 1.32.9 in headless Chromium against the session's real server (see
test_ui.py for the browser fixture). Runs are queued the way the Run button does
(``app.queuePrompt``), on the pack's demo model (shipped, CPU-sized).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from browser import close_dialogs, frames, load_workflow
from make_example_workflows import DEMO_FILE  # scripts/ is on sys.path (comfy_host)
from test_ui import SHOTS, page  # noqa: F401  (the browser fixture)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
PLOT = "canvas.adacache-adacache_schedule"
RUN_TIMEOUT = 240_000  # ms

# Records every change of the plots' data attributes (set on each redraw) and the prompt
# lifecycle events, in the order the page sees them.
RECORDER = """() => {
    window.__adacacheLog = [];
    const log = window.__adacacheLog;
    const api = window.app.api ?? window.comfyAPI?.api?.api;
    for (const ev of ['execution_start', 'execution_success']) {
        api.addEventListener(ev, ({detail}) => log.push({event: ev, prompt: detail?.prompt_id}));
    }
    window.__adacacheObserver?.disconnect();
    window.__adacacheObserver = new MutationObserver((records) => {
        for (const r of records) {
            const d = r.target.dataset;
            if (r.attributeName !== 'data-draws') continue;
            log.push({event: 'draw', node: r.target.closest('[data-node]')?.dataset.node ?? null,
                      state: d.state, run: d.run, points: Number(d.points), pattern: d.pattern});
        }
    });
    for (const c of document.querySelectorAll('canvas.adacache-adacache_schedule')) {
        window.__adacacheObserver.observe(c, {attributes: true});
    }
}"""


def load(page, workflow: dict):  # noqa: F811
    load_workflow(page, workflow)  # closes e.g. the missing-models dialog of an example


def demo_workflow() -> dict:
    return json.loads((ROOT / "workflows" / DEMO_FILE).read_text())


def apply_ids(page) -> list[int]:  # noqa: F811
    return page.evaluate(
        "() => window.app.graph._nodes.filter(n => n.type === 'AdaCacheApply').map(n => n.id)"
    )


def plot_data(page, node_id: int) -> dict:  # noqa: F811
    """The plot's dataset, once the server has answered its what-if (web/whatif.js)."""
    page.wait_for_function(
        """(id) => window.app.graph.getNodeById(id).widgets
            .find(w => w.name === 'adacache_schedule').canvas.dataset.whatif !== 'pending'""",
        arg=node_id, timeout=30_000,
    )
    return page.evaluate(
        """(id) => ({...window.app.graph.getNodeById(id).widgets
            .find(w => w.name === 'adacache_schedule').canvas.dataset})""",
        node_id,
    )


def queue_and_wait(page, node_id: int, runs_before: str | None = None) -> dict:  # noqa: F811
    """Queues the graph as the Run button does; waits for node_id's plot to show a new run."""
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function(
        """([id, old]) => { const d = window.app.graph.getNodeById(id).widgets
            .find(w => w.name === 'adacache_schedule').canvas.dataset;
            return d.state === 'done' && d.run !== old; }""",
        arg=[node_id, runs_before or ""], timeout=RUN_TIMEOUT,
    )
    page.wait_for_timeout(500)  # the frontend settles the node (progress text) after the run
    frames(page)
    return plot_data(page, node_id)


def set_widget(page, node_id: int, name: str, value):  # noqa: F811
    page.evaluate(
        """([id, name, value]) => { const n = window.app.graph.getNodeById(id);
            const w = n.widgets.find(w => w.name === name); w.value = value;
            w.callback?.(value); }""",
        [node_id, name, value],
    )


def tag_plots(page):  # noqa: F811
    page.evaluate(
        """() => { for (const n of window.app.graph._nodes) {
            const w = n.widgets?.find(w => w.name === 'adacache_schedule');
            if (w) w.element.dataset.node = String(n.id); } }"""
    )


# --- live trace --------------------------------------------------------------------------------


def test_live_plot_grows_per_compute_step_and_a_new_run_greys_the_old(page):  # noqa: F811
    load(page, demo_workflow())
    (apply,) = [i for i in apply_ids(page)
                if page.evaluate("(id) => window.app.graph.getNodeById(id).widgets"
                                 ".find(w => w.name === 'preset').value", i) != "calibrate"][:1]
    tag_plots(page)
    page.evaluate(RECORDER)
    # a seed no other test queues: ComfyUI would otherwise serve a cached result
    page.evaluate("() => window.app.graph._nodes.filter(n => n.type === 'KSampler')"
                  ".forEach(n => { n.widgets.find(w => w.name === 'seed').value = 7001; })")
    first = queue_and_wait(page, apply)
    page.wait_for_function(
        "() => window.__adacacheLog.some(e => e.event === 'execution_success')", timeout=30_000)
    log = page.evaluate("() => window.__adacacheLog")
    done = next(i for i, e in enumerate(log) if e["event"] == "execution_success")
    draws = [e for e in log[:done] if e["event"] == "draw" and e["node"] == str(apply)
             and e["run"] == first["run"]]
    pattern = first["pattern"]
    computed = [t for t, c in enumerate(pattern) if c == "C"]
    assert len(pattern) == 30 and 0 < len(computed) < 30, pattern
    # the run takes AdaCache Calibrate's plan: its steps are drawn against the plan's expected
    # change (the thresholds do not pick its rates)
    assert int(first["expected"]) >= len(computed) - 2, first
    # before the prompt finished, while the run was live, the plot showed each compute step
    live = [e for e in draws if e["state"] == "live"]
    for t in computed:
        assert any(len(e["pattern"]) > t and e["pattern"][t] == "C" and e["points"] == t + 1
                   for e in live), f"compute step {t} never drawn live: {live}"
    assert len({e["points"] for e in live}) >= len(computed)
    assert any(e["state"] == "done" for e in draws)  # the final trace, also before success

    # a second run (another seed): first greys the old plot, then replaces it
    page.evaluate(RECORDER)
    page.evaluate("""() => { for (const n of window.app.graph._nodes) {
        const w = n.widgets?.find(w => w.name === 'seed'); if (w) w.value += 1; } }""")
    second = queue_and_wait(page, apply, first["run"])
    log = page.evaluate("() => window.__adacacheLog")
    mine = [e for e in log if e["event"] == "draw" and e["node"] == str(apply)]
    stale = next(i for i, e in enumerate(mine) if e["state"] == "stale")
    assert mine[stale]["run"] == first["run"]  # the old run, greyed
    new = next(i for i, e in enumerate(mine) if e["run"] == second["run"])
    assert stale < new and mine[new]["state"] == "live" and mine[new]["points"] == 1
    assert all(e["state"] != "stale" for e in mine[new:])
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "live_second_run.png"))


# --- example workflows: no overlaps after the frontend's layout --------------------------------

RECTS = """() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => {
    const c = window.app.canvas;
    const out = [];
    for (const n of window.app.graph._nodes) {
        const b = n.getBounding ? [...n.getBounding()] : [n.pos[0], n.pos[1] - 30, n.size[0],
                                                           n.size[1] + 30];
        // DOM widgets (the AdaCache plot): their on-screen box, in graph coordinates
        for (const w of n.widgets ?? []) {
            const el = w.element;
            if (!el || !el.isConnected || !el.getClientRects().length) continue;
            const r = el.getBoundingClientRect(), cr = c.canvas.getBoundingClientRect();
            const s = c.ds.scale, o = c.ds.offset;
            const x0 = (r.left - cr.left) / s - o[0], y0 = (r.top - cr.top) / s - o[1];
            const x1 = x0 + r.width / s, y1 = y0 + r.height / s;
            const bx1 = Math.max(b[0] + b[2], x1), by1 = Math.max(b[1] + b[3], y1);
            b[0] = Math.min(b[0], x0); b[1] = Math.min(b[1], y0);
            b[2] = bx1 - b[0]; b[3] = by1 - b[1];
        }
        out.push({id: n.id, type: n.type, title: n.title, rect: b});
    }
    resolve(out);
})))"""


def node_overlaps(page, settle_ms: int = 300) -> tuple[list[dict], list[tuple]]:  # noqa: F811
    """(every node's rectangle, the pairs that intersect as (title, title, overlap height in
    px)), measured at scale 1 with the graph's top-left on screen: DOM widgets (the AdaCache
    plot) are laid out only where visible, and their boxes count with their node's."""
    page.evaluate("""() => { const c = window.app.canvas, ns = window.app.graph._nodes;
        c.ds.scale = 1;
        c.ds.offset = [40 - Math.min(...ns.map(n => n.pos[0])),
                       80 - Math.min(...ns.map(n => n.pos[1]))];
        c.setDirty(true, true); }""")
    page.wait_for_timeout(settle_ms)
    nodes = page.evaluate(RECTS)
    pairs = []
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            ax, ay, aw, ah = a["rect"]
            bx, by, bw, bh = b["rect"]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                pairs.append((a["title"], b["title"], round(min(ay + ah, by + bh) - max(ay, by))))
    return nodes, pairs


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_has_no_overlapping_nodes(page, path):  # noqa: F811
    load(page, json.loads(path.read_text()))
    nodes, overlaps = node_overlaps(page)
    assert nodes
    if overlaps:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"overlap_{path.stem}.png"))
    assert not overlaps, overlaps


# --- what-if -> Use this codebook -> rerun ------------------------------------------------------

WHATIF_GRAPH = """() => {
    const g = window.app.graph, L = window.LiteGraph;
    g.clear();
    const add = (type, pos, values = {}) => {
        const n = L.createNode(type); n.pos = pos; g.add(n);
        for (const [k, v] of Object.entries(values)) n.widgets.find(w => w.name === k).value = v;
        return n;
    };
    const unet = add('UNETLoader', [0, 0], {unet_name: 'adacache_demo_wan.safetensors'});
    const scene = add('AdaCacheDemoScene', [0, 150], {scene: 'fast motion'});
    const latent = add('EmptyHunyuanLatentVideo', [0, 300],
                       {width: 64, height: 64, length: 29, batch_size: 1});
    const editor = add('AdaCacheCodebookEditor', [0, 500], {thresholds: '1000, 2000',
                                                           rates: '1, 1'});
    const apply = add('AdaCacheApply', [400, 0], {preset: 'calibrate'});
    const ks = add('KSampler', [900, 0], {seed: 3, steps: 24, cfg: 3.0, sampler_name: 'euler',
                                          scheduler: 'simple', denoise: 1.0});
    const decode = add('AdaCacheDemoDecode', [1250, 0], {upscale: 1});
    const preview = add('PreviewImage', [1250, 150]);
    unet.connect(0, apply, 0);
    editor.connect(0, apply, apply.inputs.findIndex(i => i.name === 'codebook'));
    apply.connect(0, ks, 0);
    scene.connect(0, ks, 1);
    scene.connect(1, ks, 2);
    latent.connect(0, ks, 3);
    ks.connect(0, decode, 0);
    decode.connect(0, preview, 0);
    const c = window.app.canvas;
    c.ds.scale = 1; c.ds.offset = [-360, 60];
    g.setDirtyCanvas(true, true);
    return {apply: apply.id, editor: editor.id};
}"""

LINE_Y = """([id, i]) => { const w = window.app.graph.getNodeById(id).widgets
    .find(w => w.name === 'adacache_schedule');
    const L = window.adacache.plotLayout(w.canvas);
    const k = w.canvas.getBoundingClientRect().height / w.canvas.clientHeight;
    const t = Number(w.canvas.dataset.thresholds.split(',')[i]);
    return w.canvas.getBoundingClientRect().top + L.Y.y(t) * k; }"""

DISTANCE_Y = """([id, q]) => { const w = window.app.graph.getNodeById(id).widgets
    .find(w => w.name === 'adacache_schedule');
    const L = window.adacache.plotLayout(w.canvas);
    const k = w.canvas.getBoundingClientRect().height / w.canvas.clientHeight;
    const ds = window.adacache.distances(w.canvas).sort((a, b) => a - b);
    return w.canvas.getBoundingClientRect().top + L.Y.y(ds[Math.floor(q * (ds.length - 1))]) * k;
}"""

COMPARED = """(id) => { const n = window.app.graph.getNodeById(id);
    const st = window.adacache.stateOf(n);
    const rows = st.summary?.calibration_sample?.gap_distances ?? [];
    return [...st.records.map(r => r?.distance), ...rows.flat()]
        .filter(v => v !== null && v !== undefined && v > 0); }"""

VALUE_Y = """([id, v]) => { const w = window.app.graph.getNodeById(id).widgets
    .find(w => w.name === 'adacache_schedule');
    const k = w.canvas.getBoundingClientRect().height / w.canvas.clientHeight;
    return w.canvas.getBoundingClientRect().top
        + window.adacache.plotLayout(w.canvas).Y.y(v) * k; }"""

HIT = """([x, y]) => document.elementFromPoint(x, y)?.classList.contains(
    'adacache-adacache_schedule')"""

DISTANCES = """(id) => window.adacache.distances(window.app.graph.getNodeById(id).widgets
    .find(w => w.name === 'adacache_schedule').canvas)"""

VALUE_Y = """([id, v]) => { const w = window.app.graph.getNodeById(id).widgets
    .find(w => w.name === 'adacache_schedule');
    const k = w.canvas.getBoundingClientRect().height / w.canvas.clientHeight;
    return w.canvas.getBoundingClientRect().top
        + window.adacache.plotLayout(w.canvas).Y.y(v) * k; }"""

BAND = """([id, k]) => { const w = window.app.graph.getNodeById(id).widgets
    .find(w => w.name === 'adacache_schedule');
    const b = window.adacache.plotLayout(w.canvas).bands.find(b => b.k === k);
    const r = w.canvas.getBoundingClientRect(), s = r.height / w.canvas.clientHeight;
    return {x: r.left + (b.x0 + 12) * s, y: r.top + ((b.y0 + b.y1) / 2) * s}; }"""


def drag_threshold(page, apply, to_y, index=0):  # noqa: F811
    box = page.locator(PLOT).first.bounding_box()
    x = box["x"] + box["width"] * 0.45
    page.mouse.move(x, page.evaluate(LINE_Y, [apply, index]))
    page.mouse.down()
    page.mouse.move(x, to_y, steps=10)
    page.mouse.up()
    frames(page)


def test_what_if_predicts_the_schedule_of_the_rerun(page):  # noqa: F811
    close_dialogs(page)
    ids = page.evaluate(WHATIF_GRAPH)
    apply = ids["apply"]
    # preset 'calibrate': every step computed, the change over every gap recorded
    calibration = queue_and_wait(page, apply)
    assert set(calibration["pattern"]) == {"C"}, calibration
    # the what-if starts from the connected editor's codebook: rate 1 everywhere
    assert calibration["thresholds"] == "1000,2000" and calibration["rates"] == "1,1"
    assert calibration["predicted"] == ",".join(str(t) for t in range(24))

    # raise the first band's rate twice (click its τ label): every distance is in that band
    for _ in range(2):
        spot = page.evaluate(BAND, [apply, 0])
        assert page.evaluate(HIT, [spot["x"], spot["y"]]), "something covers the plot"
        page.mouse.click(spot["x"], spot["y"])
        page.wait_for_timeout(400)  # two clicks, not a double click
    data = plot_data(page, apply)
    assert data["rates"] == "3,1"
    after_rate = data["predicted"]
    assert after_rate != calibration["predicted"] and len(after_rate.split(",")) < 24

    # drag the first threshold down into the recorded distances: fewer steps reuse
    drag_threshold(page, apply, page.evaluate(DISTANCE_Y, [apply, 0.4]))
    data = plot_data(page, apply)
    after_drag = data["predicted"]
    assert float(data["thresholds"].split(",")[0]) < 1000
    assert after_drag != after_rate
    # then, on the rescaled axis, into the widest gap between the changes the rule may compare
    # (per step and over every gap): a schedule that does not hinge on a value a hair from the
    # threshold (a cached run's trajectory drifts a little from the calibration run's)
    values = sorted(page.evaluate(COMPARED, apply))
    _, i = max((values[i + 1] / values[i], i) for i in range(2, len(values) - 3))
    target = (values[i] * values[i + 1]) ** 0.5
    drag_threshold(page, apply, page.evaluate(VALUE_Y, [apply, target]))
    data = plot_data(page, apply)
    chosen = float(data["thresholds"].split(",")[0])
    assert values[i] < chosen < values[i + 1], (values[i], chosen, values[i + 1])
    after_drag = data["predicted"]
    assert after_drag != after_rate
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "what_if.png"))

    # Use this codebook: the editor's widgets hold it (saved with the workflow) and it runs
    page.locator(".adacache-use").first.click()
    thresholds = page.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'thresholds')"
        ".value", ids["editor"])
    rates = page.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'rates').value",
        ids["editor"])
    assert [float(t) for t in thresholds.split(",")] == [
        float(t) for t in data["thresholds"].split(",")]
    assert rates == "3, 1"
    assert page.evaluate("(id) => window.app.graph.getNodeById(id).widgets"
                         ".find(w => w.name === 'preset').value", apply) == "custom"
    rerun = queue_and_wait(page, apply, calibration["run"])
    actual = ",".join(str(t) for t, c in enumerate(rerun["pattern"]) if c == "C")
    assert actual == after_drag, (actual, after_drag)


# --- settings survive save -> reload ------------------------------------------------------------


def test_settings_round_trip_through_save_and_reload(page):  # noqa: F811
    load(page, demo_workflow())
    apply = apply_ids(page)[-1]
    values = {"preset": "slow", "metric": "l2", "metric_blocks": "0, -1", "start_percent": 0.1,
              "end_percent": 0.85, "verbose": True, "offload_cache": True}
    for name, value in values.items():
        set_widget(page, apply, name, value)
    # the demo's run takes MoReg from Calibrate: add a MoReg Settings node as a user would
    moreg = page.evaluate(
        "() => { const n = window.LiteGraph.createNode('AdaCacheMoRegSettings');"
        " n.pos = [20, 1400]; window.app.graph.add(n); return n.id; }")
    set_widget(page, moreg, "norm_a", 0.25)
    set_widget(page, moreg, "frame_strides", "1, 2")
    saved = page.evaluate("() => window.app.graph.serialize()")
    node = next(n for n in saved["nodes"] if str(n["id"]) == str(apply))
    assert node["widgets_values"] == list(values.values())  # the plot is not serialised
    load(page, json.loads(json.dumps(saved)))
    for name, value in values.items():
        got = page.evaluate(
            "([id, name]) => window.app.graph.getNodeById(id).widgets"
            ".find(w => w.name === name).value", [apply, name])
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, name
    # crisp at any zoom: the canvas backing store follows devicePixelRatio x canvas zoom
    page.evaluate(f"() => {{ const c = window.app.canvas; c.ds.scale = 2;"
                  f" const n = window.app.graph.getNodeById({apply});"
                  f" c.ds.offset = [40 - n.pos[0], 80 - n.pos[1]]; c.setDirty(true, true); }}")
    page.wait_for_timeout(400)
    size = page.evaluate(
        "(id) => { const c = window.app.graph.getNodeById(id).widgets"
        ".find(w => w.name === 'adacache_schedule').canvas;"
        " return [c.width, c.clientWidth, c.getBoundingClientRect().width,"
        " window.devicePixelRatio]; }", apply)
    width, css, shown, dpr = size
    assert shown / css == pytest.approx(2, rel=0.05)  # zoomed in twice ...
    assert width == pytest.approx(css * dpr * shown / css, rel=0.02)  # ... drawn at that size
    prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    inputs = prompt[str(apply)]["inputs"]
    assert {k: inputs[k] for k in values} == values
    assert prompt[str(moreg)]["inputs"]["norm_a"] == 0.25
    assert prompt[str(moreg)]["inputs"]["frame_strides"] == "1, 2"


# --- the events' contract (over the server's websocket, no browser) ----------------------------


def test_progress_and_trace_events_follow_the_contract(server, object_info):
    from test_e2e_server import STEPS, sampling_branch, shared_nodes

    prompt = {**shared_nodes(), **sampling_branch(object_info, apply_id="40", preset="fast",
                                                  prefix="ui/events")}
    prompt["41"]["inputs"]["seed"] = 4242  # not cached by an earlier test
    start = len(server.ws.messages)
    prompt_id, entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success"
    messages = []
    for _ in range(50):  # the socket may trail the history entry by a moment
        messages = [m for m in server.ws.messages[start:]
                    if m.get("type", "").startswith("adacache.")]
        if any(m["type"] == "adacache.trace" for m in messages):
            break
        time.sleep(0.2)
    progress = [m["data"] for m in messages if m["type"] == "adacache.progress"]
    (trace,) = [m["data"] for m in messages if m["type"] == "adacache.trace"]
    assert messages[-1]["type"] == "adacache.trace"  # after every progress event
    for m in messages:  # valid JSON for a browser: no NaN/Infinity anywhere
        json.dumps(m, allow_nan=False)
    # every step, in order: each event's record, after the reused steps it carries in "earlier"
    sent = [r for p in progress for r in [*p["earlier"], p["record"]]]
    assert [r["step"] for r in sent] == list(range(STEPS))
    computed_steps = [t for t, c in enumerate(trace["pattern"]) if c == "C"]
    assert set(computed_steps) <= {p["step"] for p in progress}  # a message at every compute step
    fields = {"step", "sigma", "computed", "reason", "calls", "distance", "motion",
              "moreg_factor", "regularized_distance", "rate"}
    for p in progress:
        assert p["prompt_id"] == prompt_id and p["node"] == "40" and p["n_steps"] == STEPS
        assert p["run"] == trace["run"] and len(p["run"]) == 32
        assert fields <= set(p["record"]) and p["record"]["step"] == p["step"]
        assert p["computed_steps"] == sum(c == "C" for c in trace["pattern"][: p["step"] + 1])
    # what does not change during a run (codebook, MoReg, calibration) comes once, first
    first, *rest = progress
    assert first["codebook"] == trace["codebook_values"] and first["calibration"] is False
    assert first["codebook"]["thresholds"] and first["codebook"]["kind"] == "codebook"
    assert not any({"codebook", "moreg", "calibration"} & set(p) for p in rest)
    for p in progress:
        nxt = p["next_compute"]
        if p["record"]["computed"] and p["step"] < STEPS - 1:
            assert nxt == p["step"] + p["record"]["rate"] or nxt is None
    assert trace["prompt_id"] == prompt_id and trace["node"] == "40"
    for full, record in zip(trace["trace"], sent, strict=True):
        assert {k: full.get(k) for k in record} == record  # progress carries the final record
    timing = trace["timing"]
    assert timing["computed_call_s"] > 0 and timing["cached_call_s"] > 0
    assert timing["estimated_speedup"] > 0


def test_live_plot_inside_a_subgraph(page):  # noqa: F811
    """The events name the Apply node by its execution id ("<subgraph node>:<inner id>")."""
    load(page, demo_workflow())
    ids = page.evaluate("""() => {
        const g = window.app.graph;
        const apply = g._nodes.find(n => n.type === 'AdaCacheApply'
            && n.widgets.find(w => w.name === 'preset').value !== 'calibrate');
        for (const n of g._nodes) {
            const w = n.widgets?.find(w => w.name === 'seed'); if (w) w.value = 8101;
        }
        const {node} = g.convertToSubgraph(new Set([apply]));
        const inner = node.subgraph._nodes.find(n => n.type === 'AdaCacheApply');
        return {outer: node.id, inner: inner.id};
    }""")
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function(
        """([outer, inner]) => { const n = window.app.graph.getNodeById(outer).subgraph
            .getNodeById(inner);
            return n.widgets.find(w => w.name === 'adacache_schedule').canvas.dataset.state
                === 'done'; }""",
        arg=[ids["outer"], ids["inner"]], timeout=RUN_TIMEOUT,
    )
    data = page.evaluate(
        """([outer, inner]) => ({...window.app.graph.getNodeById(outer).subgraph
            .getNodeById(inner).widgets.find(w => w.name === 'adacache_schedule')
            .canvas.dataset})""", [ids["outer"], ids["inner"]])
    # the run Apply takes the calibrated plan: step 0 computed, the rest placed by the plan
    assert len(data["pattern"]) == 30 and data["pattern"].startswith("C") and "." in data[
        "pattern"]
    state = page.evaluate(
        """([outer, inner]) => window.adacache.stateOf(window.app.graph.getNodeById(outer)
            .subgraph.getNodeById(inner)).summary.node""", [ids["outer"], ids["inner"]])
    assert state == f"{ids['outer']}:{ids['inner']}"


def test_picking_a_saved_codebook_shows_its_values(page, server):  # noqa: F811
    status, _ = server.request("/adacache/codebooks")
    if status == 404:
        pytest.skip("this pack has no saved codebooks (AdaCache Calibrate) yet")
    folder = server.base / "user" / "default" / "adacache" / "codebooks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ui_pick.json").write_text(
        json.dumps({"name": "ui_pick", "thresholds": [0.05, 0.2, 1.0], "rates": [4, 2, 1]}))
    close_dialogs(page)
    editor = page.evaluate("""async () => { const g = window.app.graph; g.clear();
        const n = window.LiteGraph.createNode('AdaCacheCodebookEditor'); n.pos = [100, 100];
        g.add(n); await window.adacache.refreshSavedOptions(); return n.id; }""")
    options = page.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'saved')"
        ".options.values", editor)
    assert options[0] == "(use the values above)" and "ui_pick" in options
    set_widget(page, editor, "saved", "ui_pick")
    page.wait_for_function(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'thresholds')"
        ".value === '0.05, 0.2, 1'", arg=editor, timeout=10_000)
    assert page.evaluate(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'rates').value",
        editor) == "4, 2, 1"
    # the editor names it for what it is (the route's kind; a file with no kind and no profile)
    page.wait_for_function(
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === "
        "'adacache_check').element.textContent === \"✓ uses the saved codebook 'ui_pick'\"",
        arg=editor, timeout=10_000)
    assert page.evaluate(  # and so does the list: the value stays the file's name
        "(id) => window.app.graph.getNodeById(id).widgets.find(w => w.name === 'saved')"
        ".options.getOptionLabel('ui_pick')", editor) == "ui_pick · codebook"


# --- the auto presets -------------------------------------------------------------------------


def test_auto_calibrates_on_the_first_run_and_is_faster_on_the_second(page):  # noqa: F811
    """A new AdaCache Apply with the default preset (auto): the first run computes every step
    and the node says it is calibrating; the second computes fewer, and the node says it runs
    the calibrated plan."""
    load(page, demo_workflow())
    run_id = page.evaluate("""() => {
        const g = window.app.graph;
        const apply = g._nodes.find(n => n.type === 'AdaCacheApply'
            && n.widgets.find(w => w.name === 'preset').value !== 'calibrate');
        for (const name of ['codebook', 'moreg']) {
            const slot = apply.inputs.findIndex(i => i.name === name);
            if (apply.inputs[slot].link != null) apply.disconnectInput(slot);
        }
        const fresh = window.LiteGraph.createNode('AdaCacheApply');
        apply.widgets.find(w => w.name === 'preset').value =
            fresh.widgets.find(w => w.name === 'preset').value;  // the default of a new node
        // a setup no other test calibrated: its own cfg
        for (const link of apply.outputs[0].links ?? []) {
            const sampler = g.getNodeById(g.links[link]?.target_id ?? g.getLink?.(link)?.target_id);
            const cfg = sampler?.widgets?.find(w => w.name === 'cfg');
            if (cfg) cfg.value = 3.7;
        }
        return apply.id;
    }""")
    preset = page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'preset').value""", run_id)
    assert preset.startswith("auto"), preset

    def warnings():
        return page.evaluate("""(id) => window.adacache.stateOf(window.app.graph
            .getNodeById(id)).summary.warnings""", run_id)

    first = queue_and_wait(page, run_id)
    assert first["pattern"] == "C" * 30
    assert warnings()[0].startswith("auto: calibrating"), warnings()
    page.screenshot(path=str(SHOTS / "auto_first_run.png"))
    page.evaluate("""() => { for (const n of window.app.graph._nodes) {
        const w = n.widgets?.find(w => w.name === 'seed'); if (w) w.value += 17; } }""")
    second = queue_and_wait(page, run_id, first["run"])
    assert second["pattern"].count("C") < 30 and "." in second["pattern"]
    assert warnings()[0].startswith("auto: the calibrated plan"), warnings()
    page.screenshot(path=str(SHOTS / "auto_second_run.png"))


def test_a_plan_run_shows_one_schedule_until_an_edit(page):  # noqa: F811
    """After a calibrated plan's run the node shows the schedule that ran, no what-if of the
    plan's thresholds beside it; dragging a threshold brings the what-if."""
    load(page, demo_workflow())
    tag_plots(page)
    page.evaluate("""(seed) => { for (const n of window.app.graph._nodes) {
        const w = n.widgets?.find(w => w.name === 'seed'); if (w) w.value = seed; } }""", 7301)
    run_id = page.evaluate("""() => window.app.graph._nodes.find(n => n.type === 'AdaCacheApply'
        && n.widgets.find(w => w.name === 'preset').value !== 'calibrate').id""")
    data = queue_and_wait(page, run_id)
    assert int(data["expected"]) > 0  # a calibrated plan ran (its expected change is drawn)
    assert data["rule"] == "calibrated plan"  # the summary's typed kind
    assert data["predicted"] == "" and data["predictedCount"] == ""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "plan_run_one_schedule.png"))
    spot = page.evaluate(BAND, [run_id, 0])  # click a band's rate: an edit
    page.mouse.click(spot["x"], spot["y"])
    page.wait_for_timeout(400)
    frames(page)
    edited = plot_data(page, run_id)
    assert edited["predicted"] != "" and int(edited["predictedCount"]) > 0


def test_use_this_codebook_never_undoes_calibration_or_a_plan(page):  # noqa: F811
    """On the demo's calibrating Apply the button keeps preset 'calibrate' (the next queue still
    calibrates and AdaCache Calibrate still fits); on the plan-fed Apply it asks first, saying
    what changes, and a dismissed question changes nothing."""
    load(page, demo_workflow())
    page.evaluate("""(seed) => { for (const n of window.app.graph._nodes) {
        const w = n.widgets?.find(w => w.name === 'seed'); if (w) w.value = seed; } }""", 7402)
    ids = page.evaluate("""() => {
        const applies = window.app.graph._nodes.filter(n => n.type === 'AdaCacheApply');
        const preset = (n) => n.widgets.find(w => w.name === 'preset').value;
        return {cal: applies.find(n => preset(n) === 'calibrate').id,
                run: applies.find(n => preset(n) !== 'calibrate').id}; }""")
    first = queue_and_wait(page, ids["run"])  # seeds no other test queued: nothing cached
    press = """(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'adacache_schedule').element.querySelector('.adacache-use').click()"""
    source = """(id) => { const g = window.app.graph, n = g.getNodeById(id);
        const link = n.inputs.find(i => i.name === 'codebook').link;
        const l = g.links[link] ?? g.getLink?.(link); return g.getNodeById(l.origin_id).type; }"""
    preset = """(id) => window.app.graph.getNodeById(id).widgets
        .find(w => w.name === 'preset').value"""

    messages = []
    page.on("dialog", lambda d: (messages.append(d.message), d.dismiss()))
    page.evaluate(press, ids["run"])
    page.wait_for_timeout(300)
    assert messages and "calibrated plan" in messages[0], messages
    assert page.evaluate(source, ids["run"]) == "AdaCacheCalibrate"  # nothing replaced
    assert page.evaluate(preset, ids["run"]) == "custom"

    page.evaluate(press, ids["cal"])
    assert page.evaluate(preset, ids["cal"]) == "calibrate"
    assert page.evaluate(source, ids["cal"]) == "AdaCacheCodebookEditor"
    second = queue_and_wait(page, ids["run"], first["run"])  # Calibrate fits again: it queues
    assert second["state"] == "done"
    calibrating = plot_data(page, ids["cal"])
    assert set(calibrating["pattern"]) == {"C"}
