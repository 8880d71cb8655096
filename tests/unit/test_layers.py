"""Imports only go down: foundation < features < expectations < (training | serving | monitoring) < entry points.

Every import counts, the ones inside functions too: a lazy import is still a dependency, and
hiding a cycle behind one is what this test exists to stop.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledgerline", "features", "expectations", "training", "serving", "monitoring", "dags")
#: the top layer: command lines, the demo, Airflow task bodies and DAG files
ENTRY_POINTS = (
    "ledgerline.app",
    "serving.cli",
    "serving.demo",
    "monitoring.cli",
    "dags",
)
RANK = {"ledgerline": 0, "features": 1, "expectations": 2, "training": 3, "serving": 3, "monitoring": 3}
TOP = 4


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _layer(module: str) -> tuple[int, str]:
    if any(module == e or module.startswith(e + ".") for e in ENTRY_POINTS):
        return TOP, "entry points"
    top = module.split(".")[0]
    return RANK[top], top


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_imports_only_go_down_the_layers():
    modules = _modules()
    problems = []
    for module, path in sorted(modules.items()):
        rank, layer = _layer(module)
        for target in sorted(_imports(path)):
            if target not in modules:  # "from pkg import name" where name is not a module
                continue
            t_rank, t_layer = _layer(target)
            same_package = t_layer == layer
            if t_rank > rank or (t_rank == rank and not same_package):
                problems.append(f"{module} ({layer}) imports {target} ({t_layer})")
    assert not problems, "imports that go up or sideways:\n  " + "\n  ".join(problems)
