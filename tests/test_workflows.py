"""Every workflow in ``workflows/`` against a real server's ``/object_info``.

The workflows are UI format (what users save and drag in): ``nodes`` with ``widgets_values``,
``links`` as ``[id, from node, from slot, to node, to slot, type]``. The server (shared session
fixture, see conftest.py / comfy_server.py) lists every node type's inputs and outputs; checked:

- every node type exists on the server (Note, MarkdownNote, Reroute, PrimitiveNode exist only in
  the frontend and are allowed explicitly);
- each node's input and output slots exist on the server with the same types;
- ``widgets_values`` has one value per widget input (required, then optional; inputs that take
  links only have none; optional widgets a newer host added at the end, e.g. CreateVideo's
  ``bit_depth``, may be absent), plus the frontend's extra value after a widget with
  ``control_after_generate`` (seeds) and after an upload combo (LoadImage's upload button); a
  V3 DynamicCombo (newer hosts' ``SaveVideo.format``) is followed by the widgets of the option
  its value selects (named ``format.codec`` in API prompts), hidden inputs have no widget;
- every widget value is valid: combo values are among the options, except model-file combos of
  loaders (their options are the files present on this server) which must be file names with a
  model extension — and for the pack's own demo, whose model ships with the pack, really
  present; ints and floats within min/max; booleans are booleans; strings are strings. A widget
  converted to an input and driven by a link is counted but not checked;
- every required link input of an active node is connected;
- every link is consistent with both ends' slot lists and connects matching types (source output
  type == target input type, or ``*``);
- the server's own ``/prompt`` validation, on the workflow converted to API format the way
  the frontend does it, reports nothing but the model and image files not installed on the
  test server (so nothing is queued; the demo, whose files are all there, is left to its own
  tests);
- a ``.jpg`` thumbnail for every ``.json``;
- AdaCache placement: each AdaCache Apply takes its model from a loader (or its shift node) and
  feeds a sampler or guider; the video examples connect MoReg Settings; at least one example
  uses a Codebook Editor with preset ``custom``; each example explains its preset in a Note.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from make_example_workflows import DEMO_FILE  # scripts/ is on sys.path (comfy_host)
from PIL import Image

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
FILES = sorted(WORKFLOWS.glob("*.json"))
DEMO = DEMO_FILE  # the pack's own demo: its model ships with the pack
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # V3 combo whose option brings its own inputs
WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", DYNAMIC_COMBO}
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
ACTIVE = 0  # node mode; 2 = muted, 4 = bypassed
# The examples the pack promises (issue 3), by file name stem = template browser title.
EXPECTED = {
    "Wan 2.1 text to video 1.3B",
    "Wan 2.1 image to video 14B",
    "Wan 2.2 14B, two experts",
    "Wan 2.2 TI2V 5B",
    "HunyuanVideo text to video", "LTX-Video text to video",
    "Mochi text to video", "Cosmos Predict2 image to video",
    "Flux.1 dev text to image",
}
MODEL_SOURCES = {"UNETLoader", "CheckpointLoaderSimple", "ModelSamplingSD3", "LoraLoaderModelOnly"}
MODEL_SINKS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "BasicGuider", "CFGGuider",
               "BasicScheduler", "AdaCacheReport", "AdaCacheCalibrate"}
VIDEO_LATENTS = {"EmptyHunyuanLatentVideo", "EmptyLTXVLatentVideo", "EmptyMochiLatentVideo",
                 "WanImageToVideo", "Wan22ImageToVideoLatent", "CosmosPredict2ImageToVideoLatent"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- reading /object_info --------------------------------------------------------------------


class Input:
    """One input of a node type as /object_info describes it."""

    def __init__(self, name: str, spec, section: str, node_info: dict):
        self.name, self.section = name, section
        kind = spec[0] if isinstance(spec, list | tuple) and spec else spec
        self.opts = spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 else {}
        if not isinstance(self.opts, dict):
            self.opts = {}
        if isinstance(kind, list):  # V1 combo: the options list itself
            self.type, self.options = "COMBO", kind
        else:  # V3 combos: ["COMBO", {"options": [...]}]
            self.type, self.options = str(kind), self.opts.get("options")
        self.choices = {}  # DynamicCombo: option key -> its inputs (as /object_info nests them)
        if self.type == DYNAMIC_COMBO:
            self.choices = {o["key"]: o.get("inputs") or {} for o in self.options or []}
            self.options = list(self.choices)
        self.is_widget = (
            self.type in WIDGET_TYPES
            and not self.opts.get("forceInput")
            and not self.opts.get("hidden")
        )
        category = str(node_info.get("category", "")).lower()
        self.is_upload = any(self.opts.get(flag) for flag in UPLOAD_FLAGS)
        # Options that are the files on this server: loaders' *_name combos, upload combos.
        self.is_file_list = self.type == "COMBO" and (
            self.is_upload
            or ("loader" in category and re.search(r"_name\d*$", name) is not None)
        )

    @property
    def extra_values(self) -> int:
        """Values the frontend saves after this widget's own: seed control, upload button."""
        return int(bool(self.opts.get("control_after_generate"))) + int(self.is_upload)


    def chosen(self, key, node_info: dict) -> list[Input]:
        """A DynamicCombo's inputs for the option ``key``, named ``<self>.<input>``."""
        nested = {"input": self.choices.get(key) or {}, "category": node_info.get("category")}
        inputs = node_inputs(nested)
        for inp in inputs:
            inp.name = f"{self.name}.{inp.name}"
        return inputs


def node_inputs(node_info: dict) -> list[Input]:
    order = node_info.get("input_order") or {}
    out = []
    for section in ("required", "optional"):
        specs = node_info.get("input", {}).get(section) or {}
        names = order.get(section) or list(specs)
        out += [Input(name, specs[name], section, node_info) for name in names if name in specs]
    return out


def widget_slots(values: list, info: dict) -> tuple[list[tuple[Input, object, list]], str | None]:
    """(widget, its value, the frontend's extra values) for a list of ``widgets_values``, and
    what is wrong with the count (None if nothing).

    DynamicCombo widgets are followed by the widgets of the option their value selects; the
    list may end early when every widget left is optional (added by a newer host).
    """
    pending = [i for i in node_inputs(info) if i.is_widget]
    slots, pos = [], 0
    while pending:
        widget = pending.pop(0)
        if pos >= len(values):
            if widget.section == "optional" and all(w.section == "optional" for w in pending):
                break
            names = [w.name for w in (widget, *pending)]
            return slots, f"{len(values)} widgets_values {values!r}, none left for {names}"
        value = values[pos]
        slots.append((widget, value, values[pos + 1:pos + 1 + widget.extra_values]))
        pos += 1 + widget.extra_values
        if widget.choices:
            pending = [i for i in widget.chosen(value, info) if i.is_widget] + pending
    if pos != len(values):
        names = [w.name + "(+1)" * w.extra_values for w, _, _ in slots]
        return slots, f"{len(values)} widgets_values {values!r}, expected {pos} for {names}"
    return slots, None


def types_match(source: str, target: str) -> bool:
    if "*" in (source, target) or source == target:
        return True
    return bool(set(source.split(",")) & set(target.split(",")))  # multi-types "A,B"


# --- checks --------------------------------------------------------------------------------


def check_value(inp: Input, value, *, demo: bool) -> str | None:
    """None when ``value`` is valid for ``inp``, else what is wrong."""
    t, o = inp.type, inp.opts
    if t in ("COMBO", DYNAMIC_COMBO):
        options = inp.options or []
        if inp.is_file_list:
            exts = IMAGE_EXTENSIONS if inp.is_upload else MODEL_EXTENSIONS
            if not isinstance(value, str) or not value.lower().endswith(exts):
                return f"{value!r} is not a file name ending in one of {exts}"
            if demo and not inp.is_upload and value not in options:
                return f"{value!r} is not on the server (shipped with the pack?); has {options}"
            return None
        return None if value in options else f"{value!r} not among the options {options}"
    if t == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an int"
    elif t == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            return f"{value!r} is not a finite number"
    elif t == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    elif t == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if t in ("INT", "FLOAT"):
        lo, hi = o.get("min"), o.get("max")
        if lo is not None and value < lo - 1e-9:
            return f"{value!r} < min {lo}"
        if hi is not None and value > hi + 1e-9:
            return f"{value!r} > max {hi}"
    return None


def check_widgets(node: dict, info: dict, *, demo: bool) -> list[str]:
    where = f"node {node['id']} ({node['type']})"
    widgets = [i for i in node_inputs(info) if i.is_widget]
    linked = {i["widget"]["name"] for i in node.get("inputs") or []
              if isinstance(i.get("widget"), dict) and i.get("link") is not None}
    values = node.get("widgets_values", [])
    problems = []
    if isinstance(values, dict):  # some frontends/extensions save values by name
        pairs = [(w, values[w.name]) for w in widgets if w.name in values]
        missing = [w.name for w in widgets if w.name not in values]
        if missing:
            problems.append(f"{where}: widgets_values has no {missing}")
    else:
        slots, count_problem = widget_slots(values, info)
        if count_problem:
            return [f"{where}: {count_problem}"]
        pairs = []
        for w, value, extras in slots:
            pairs.append((w, value))
            if w.opts.get("control_after_generate") and extras[0] not in CONTROL_VALUES:
                problems.append(f"{where}.{w.name}: control_after_generate value {extras[0]!r} "
                                f"not in {sorted(CONTROL_VALUES)}")
    for w, value in pairs:
        if w.name in linked:
            continue  # converted to an input and driven by a link
        error = check_value(w, value, demo=demo)
        if error:
            problems.append(f"{where}.{w.name}: {error}")
    return problems


def check_slots(node: dict, info: dict) -> list[str]:
    where = f"node {node['id']} ({node['type']})"
    by_name = {i.name: i for i in node_inputs(info)}
    problems = []
    for slot in node.get("inputs") or []:
        inp = by_name.get(slot.get("name"))
        if inp is None:
            problems.append(f"{where}: input {slot.get('name')!r} is not on the server")
        elif not types_match(inp.type, slot.get("type", "")) and not (
            inp.type == "COMBO" and slot.get("widget")
        ):
            problems.append(f"{where}: input {inp.name} has type {slot.get('type')!r}, "
                            f"the server says {inp.type!r}")
    server_out = info.get("output") or []
    outputs = node.get("outputs") or []
    if len(outputs) > len(server_out):
        problems.append(f"{where}: {len(outputs)} outputs, the server has {len(server_out)}")
    for i, (slot, server_type) in enumerate(zip(outputs, server_out, strict=False)):
        if slot.get("type") != server_type and not isinstance(server_type, list):
            problems.append(f"{where}: output {i} has type {slot.get('type')!r}, the server "
                            f"says {server_type!r}")
    if node.get("mode", ACTIVE) == ACTIVE:
        connected = {s.get("name") for s in node.get("inputs") or [] if s.get("link") is not None}
        for inp in node_inputs(info):
            if inp.section == "required" and not inp.is_widget and inp.name not in connected:
                problems.append(f"{where}: required input {inp.name} ({inp.type}) not connected")
    return problems


def check_links(graph: dict, object_info: dict) -> list[str]:
    nodes = {n["id"]: n for n in graph["nodes"]}
    problems = []
    seen = set()
    for link in graph["links"]:
        if isinstance(link, dict):  # newer serialisation
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"],
                    link["target_slot"], link["type"]]
        link_id, src_id, src_slot, dst_id, dst_slot, link_type = link[:6]
        where = f"link {link_id} ({src_id}:{src_slot} -> {dst_id}:{dst_slot})"
        if link_id in seen:
            problems.append(f"{where}: duplicate link id")
        seen.add(link_id)
        src, dst = nodes.get(src_id), nodes.get(dst_id)
        if src is None or dst is None:
            problems.append(f"{where}: missing node")
            continue
        outs, ins = src.get("outputs") or [], dst.get("inputs") or []
        if not 0 <= src_slot < len(outs) or not 0 <= dst_slot < len(ins):
            problems.append(f"{where}: slot out of range")
            continue
        out, inp = outs[src_slot], ins[dst_slot]
        if link_id not in (out.get("links") or []) or inp.get("link") != link_id:
            problems.append(f"{where}: the nodes' slots do not list this link")
        # The type each end really has on the server (frontend-only nodes: as saved).
        if src["type"] in FRONTEND_ONLY or src["type"] not in object_info:
            src_type = out.get("type", "*")
        else:
            server_out = object_info[src["type"]]["output"]
            if src_slot >= len(server_out):
                problems.append(f"{where}: {src['type']} has no output {src_slot} on the server")
                continue
            src_type = server_out[src_slot]
            src_type = "COMBO" if isinstance(src_type, list) else src_type
        if dst["type"] in FRONTEND_ONLY or dst["type"] not in object_info:
            dst_type = inp.get("type", "*")
        else:
            by_name = {i.name: i for i in node_inputs(object_info[dst["type"]])}
            if inp.get("name") not in by_name:
                problems.append(f"{where}: {dst['type']} has no input {inp.get('name')!r}")
                continue
            dst_type = by_name[inp["name"]].type
        if not types_match(src_type, dst_type):
            problems.append(f"{where}: {src['type']} outputs {src_type}, {dst['type']}."
                            f"{inp.get('name')} takes {dst_type}")
        if not types_match(link_type, src_type):
            problems.append(f"{where}: link type {link_type!r} but the output is {src_type!r}")
    return problems


def validate(path: Path, object_info: dict) -> list[str]:
    graph = load(path)
    problems = []
    for key in ("nodes", "links", "version", "last_node_id", "last_link_id"):
        if key not in graph:
            problems.append(f"no {key!r}")
    if problems:
        return problems
    ids = [n["id"] for n in graph["nodes"]]
    if len(ids) != len(set(ids)):
        problems.append("duplicate node ids")
    if ids and max(ids) > graph["last_node_id"]:
        problems.append(f"last_node_id {graph['last_node_id']} < node id {max(ids)}")
    demo = path.name == DEMO
    for node in graph["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY:
            if kind in ("Note", "MarkdownNote") and not (
                len(node.get("widgets_values", [])) == 1
                and isinstance(node["widgets_values"][0], str)
            ):
                problems.append(f"node {node['id']} ({kind}): expected one text value")
            continue
        if kind not in object_info:
            problems.append(f"node {node['id']}: type {kind!r} does not exist on the server")
            continue
        problems += check_slots(node, object_info[kind])
        problems += check_widgets(node, object_info[kind], demo=demo)
    problems += check_links(graph, object_info)
    return problems


def widget_pairs(node: dict, info: dict) -> list[tuple[Input, object]]:
    """(widget input, saved value) pairs of a node whose widgets_values are well-formed."""
    values = node.get("widgets_values", [])
    if isinstance(values, dict):
        widgets = [i for i in node_inputs(info) if i.is_widget]
        return [(w, values[w.name]) for w in widgets if w.name in values]
    return [(w, value) for w, value, _ in widget_slots(values, info)[0]]


def to_api(graph: dict, object_info: dict) -> dict:
    """The API-format prompt the frontend would queue for this UI-format graph."""
    nodes, links = _graph_index(graph)

    def source(link_id):
        """[node id, slot] feeding a link, through reroutes and bypassed nodes; or a value."""
        _, src_id, src_slot, *_ = links[link_id]
        src = nodes[src_id]
        if src["type"] == "PrimitiveNode":
            return ("value", src["widgets_values"][0])
        if src["type"] == "Reroute" or src.get("mode") == 4:  # pass through by type
            kind = src["outputs"][src_slot]["type"]
            for inp in src.get("inputs") or []:
                if inp.get("link") is not None and types_match(inp["type"], kind):
                    return source(inp["link"])
            return None
        if src.get("mode", ACTIVE) != ACTIVE:
            return None
        return ("link", [str(src_id), src_slot])

    prompt = {}
    for node in graph["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", ACTIVE) != ACTIVE:
            continue
        inputs = {w.name: value for w, value in widget_pairs(node, object_info[node["type"]])}
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            got = source(inp["link"])
            if got is not None:
                inputs[inp["name"]] = got[1]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def missing_files(graph: dict, object_info: dict) -> bool:
    """Whether some file the workflow names is not on the server (so /prompt cannot queue it)."""
    for node in graph["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", ACTIVE) != ACTIVE:
            continue
        for w, value in widget_pairs(node, object_info[node["type"]]):
            if w.is_file_list and value not in (w.options or []):
                return True
    return False


# --- tests ---------------------------------------------------------------------------------


def test_example_workflows_present():
    stems = {p.stem for p in FILES}
    assert not EXPECTED - stems, f"missing: {sorted(EXPECTED - stems)}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_thumbnail(path):
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"{path.name} has no thumbnail {thumb.name}"
    with Image.open(thumb) as img:
        assert img.format == "JPEG" and min(img.size) >= 64, (img.format, img.size)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_workflow_against_object_info(path, object_info):
    problems = validate(path, object_info)
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


NEEDS_MODELS = [p for p in FILES if p.name != DEMO]  # the demo's files ship with the pack


@pytest.mark.parametrize("path", NEEDS_MODELS, ids=[p.name for p in NEEDS_MODELS])
def test_server_prompt_validation(path, server, object_info):
    graph = load(path)
    assert not validate(path, object_info), "invalid as saved (test_workflow_against_object_info)"
    assert missing_files(graph, object_info), "every file is installed: /prompt would run it"
    status, body = server.queue(to_api(graph, object_info))
    assert status == 400, f"/prompt queued it (or failed otherwise): {status} {body}"
    problems = []
    for node_id, entry in (body.get("node_errors") or {}).items():
        node = next(n for n in graph["nodes"] if str(n["id"]) == node_id)
        by_name = {i.name: i for i in node_inputs(object_info[node["type"]])}
        for error in entry["errors"]:
            name = (error.get("extra_info") or {}).get("input_name")
            allowed = error["type"] in ("value_not_in_list", "custom_validation_failed")
            if not (allowed and name in by_name and by_name[name].is_file_list):
                problems.append(f"node {node_id} ({node['type']}): {error}")
    assert body.get("node_errors"), body
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def _graph_index(graph: dict):
    nodes = {n["id"]: n for n in graph["nodes"]}
    links = {link[0]: link for link in graph["links"]}
    return nodes, links


def _source(node: dict, name: str, nodes, links):
    slot = next((i for i in node.get("inputs") or [] if i["name"] == name), None)
    if slot is None or slot.get("link") is None:
        return None
    return nodes[links[slot["link"]][1]]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_adacache_placement(path):
    graph = load(path)
    nodes, links = _graph_index(graph)
    applies = [n for n in graph["nodes"] if n["type"] == "AdaCacheApply"]
    assert applies, "no AdaCache Apply"
    video = any(n["type"] in VIDEO_LATENTS for n in graph["nodes"])
    for node in applies:
        src = _source(node, "model", nodes, links)
        assert src is not None and src["type"] in MODEL_SOURCES, (
            f"AdaCache Apply {node['id']} takes its model from "
            f"{src and src['type']}, not a loader or its shift node")
        targets = {nodes[links[i][3]]["type"] for i in node["outputs"][0].get("links") or []}
        assert targets and targets <= MODEL_SINKS, (
            f"AdaCache Apply {node['id']} feeds {targets}, not (only) samplers/guiders")
        # MoReg and a custom codebook come from their settings nodes or from AdaCache Calibrate
        # (the demo's calibrate -> run path); a calibration run needs neither
        if video and node["widgets_values"][0] != "calibrate":
            moreg = _source(node, "moreg", nodes, links)
            assert moreg is not None and moreg["type"] in (
                "AdaCacheMoRegSettings", "AdaCacheCalibrate"), (
                f"video workflow: AdaCache Apply {node['id']} has no MoReg Settings connected")
        if node["widgets_values"][0] == "custom":
            codebook = _source(node, "codebook", nodes, links)
            assert codebook is not None and codebook["type"] in (
                "AdaCacheCodebookEditor", "AdaCacheCalibrate"), (
                f"AdaCache Apply {node['id']}: preset custom without a codebook source")
    if path.name != DEMO:
        notes = [n["widgets_values"][0] for n in graph["nodes"]
                 if n["type"] in ("Note", "MarkdownNote")]
        assert any("preset" in text for text in notes), "no Note explaining the preset"


def test_some_example_uses_a_custom_codebook():
    for path in FILES:
        graph = load(path)
        nodes, links = _graph_index(graph)
        for node in graph["nodes"]:
            if node["type"] == "AdaCacheApply" and node["widgets_values"][0] == "custom":
                src = _source(node, "codebook", nodes, links)
                if src is not None and src["type"] == "AdaCacheCodebookEditor":
                    return
    pytest.fail("no workflow uses a Codebook Editor with preset 'custom'")
