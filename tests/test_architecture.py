"""The module map in docs/architecture.md is the truth: every module is listed, and each
imports only the siblings its row allows (read from the source, in-function imports too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def allowed_imports() -> dict[str, set[str]]:
    rows = re.findall(r"^\| `([\w/.]+)` \| .* \| (.*) \|$", DOC.read_text(), re.M)
    return {
        module: set() if allowed.strip() == "—" else {a.strip() for a in allowed.split(",")}
        for module, allowed in rows
    }


def modules() -> list[str]:
    """Rows are files, or a package folder (``adacache/families/``) for all of its files."""
    found = []
    for path in sorted([*ROOT.glob("adacache/**/*.py"), *ROOT.glob("nodes/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("adacache/families/"):
            rel = "adacache/families/"
        if rel != "nodes/__init__.py" and rel not in found:
            found.append(rel)
    return found


def sibling_imports(rel: str) -> set[str]:
    """The pack modules ``rel`` imports: core module names, or ``adacache`` for the core as
    seen from ``nodes/``, or ``families`` inside that package."""
    paths = sorted((ROOT / rel).glob("*.py")) if rel.endswith("/") else [ROOT / rel]
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            module = node.module or ""
            if rel.startswith("adacache/families/"):
                names.add("families")
            elif module:  # .x, or ..adacache[.x] from nodes/
                names.add(module.split(".")[0])
            else:  # from . import a, b
                names.update(alias.name for alias in node.names)
    return names


def test_every_module_has_a_row_and_imports_only_what_it_may():
    table = allowed_imports()
    missing, stale = set(modules()) - set(table), set(table) - set(modules())
    assert not missing, f"modules without a row in docs/architecture.md: {missing}"
    assert not stale, f"rows for modules that do not exist: {stale}"
    for rel in modules():
        allowed = table[rel]
        if "every core module" in allowed:
            continue
        extra = sibling_imports(rel) - allowed
        assert not extra, f"{rel} imports {sorted(extra)}; its row allows {sorted(allowed)}"


def test_the_core_never_imports_comfyui_or_the_nodes():
    for path in ROOT.glob("adacache/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]} if node.level == 0 else set()
                if node.level >= 2:
                    roots.add("nodes")
            else:
                continue
            assert not roots & {"comfy", "comfy_api", "comfy_extras", "nodes", "server"}, path
