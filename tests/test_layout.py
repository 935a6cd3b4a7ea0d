"""The house plan (docs/layout.md): no import circles, serving apart from training, small folders."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("inference", "streams")
# Serving may not reach these, not even inside a function.
TRAINING_SIDE = ("inference.data", "inference.train", "inference.export", "inference.evaluation")
MAX_MODULES_PER_FOLDER = 15


def project_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` the module.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_imports_inside_functions_and_type_checking_blocks():
    graph = import_graph()
    # streams.cli.model imports the training side only inside command functions
    assert "inference.train.training" in graph["streams.cli.model"]
    # the alert service names WorkerContext under TYPE_CHECKING only
    assert "streams.context" in graph["streams.alerts.service"]
    # and the walk finds a circle when there is one
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_streams_or_inference():
    assert circles(import_graph()) == []


def test_serving_modules_import_nothing_from_training_even_inside_functions():
    graph = import_graph()
    serving = [m for m in graph if m.startswith("inference.serve")] + [
        m for m in graph if m.startswith("streams.") and not m.startswith("streams.cli")
    ]
    reached = {m: sorted(t for t in graph[m] if t.startswith(TRAINING_SIDE)) for m in serving}
    assert {m: t for m, t in reached.items() if t} == {}


def test_serving_loads_no_training_module_and_no_torch_in_a_fresh_interpreter():
    serving = [
        *sorted(m for m in project_modules() if m.startswith("inference.serve.")),
        "streams.worker",
        "streams.app",
        "streams.web.api",
        "streams.alerts.service",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {serving!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    assert "inference.serve.runner" in loaded  # the probe did import the serving side
    bad = [m for m in loaded if m.startswith(TRAINING_SIDE) or m.split(".")[0] in ("torch", "transformers")]
    assert bad == []


def test_no_folder_holds_more_than_fifteen_modules():
    counts = {}
    for pkg in PACKAGES:
        for folder in [ROOT / pkg, *(p for p in (ROOT / pkg).rglob("*") if p.is_dir())]:
            n = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
            if n:
                counts[str(folder.relative_to(ROOT))] = n
    assert {f: n for f, n in counts.items() if n > MAX_MODULES_PER_FOLDER} == {}
