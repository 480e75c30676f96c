"""The demo figures in README.md and docs/demo.md are the committed results file's.

``make demo-record`` writes ``benchmarks/results/demo.json`` and regenerates the marked blocks
(``scripts/doc_figures.py``); this checks, without rerunning the demo, that the committed docs
hold exactly what that file renders to, so a hand-edited or stale figure fails here.
"""

from __future__ import annotations

import re

import doc_figures  # scripts/ is on sys.path (comfy_host)

README = {"command", "calibrated", "moreg-table", "fast-speedup", "plan-table"}
DEMO_MD = {"command", "table", "fast-steps", "fast-stack", "moreg-steps", "fast-speedup"}


def names(path) -> set[str]:
    return set(re.findall(r"<!-- demo:([a-z0-9-]+) -->", path.read_text(encoding="utf-8")))


def test_docs_hold_the_recorded_demo_figures():
    results = doc_figures.load()
    assert results["scenes"] == ["static", "slow drift", "fast motion", "camera pan"]
    readme, demo_md = doc_figures.DOCS
    assert names(readme) >= README and names(demo_md) >= DEMO_MD
    assert doc_figures.drift(results) == [], "run `make demo-record` (or doc_figures.py)"
    # the recorded file is what the Makefile target writes
    makefile = (doc_figures.ROOT / "Makefile").read_text()
    recipe = makefile.split("demo-record:", 1)[1].splitlines()[1]
    assert "scripts/demo.py" in recipe and "--record" in recipe
    assert results["command"] == doc_figures.COMMAND


def test_a_changed_figure_is_caught():
    results = doc_figures.load()
    row = next(r for r in results["table"]
               if r["scene"] == "fast motion" and r["mode"] == "adacache+moreg")
    row["computed_steps_mean"] += 0.5
    assert set(doc_figures.drift(results)) == {"README.md", "docs/demo.md"}
