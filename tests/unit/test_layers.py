"""The house rules of the layout, as tests with no exception list:

* imports only go down: foundation < features < expectations < training < serving, monitoring < apps < dags;
  a family's modules rank with the layer they serve (``model``/``data`` with features, ``train`` with
  training, ``serve`` with serving, ...);
* the platform reaches families only through the registry (``ledgerline.families``), never by import;
* no family imports another;
* no platform file names a family (the registry, ``ledgerline/families.py``, is the one place).

Every import counts, the ones inside functions too: a lazy import is still a dependency, and
hiding a cycle behind one is what this test exists to stop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledgerline", "features", "expectations", "training", "serving", "monitoring", "families", "apps", "dags")
RANK = {"ledgerline": 0, "features": 1, "expectations": 2, "training": 3, "serving": 4, "monitoring": 4, "apps": 5, "dags": 6}
#: a family's module (its file name) -> the layer it ranks with; a new kind of module gets a line here
FAMILY_MODULE_LAYER = {
    "settings": "ledgerline",
    "tables": "ledgerline",
    "model": "features",
    "data": "features",
    "behaviour": "features",
    "corrections": "features",
    "actuals": "features",  # rules for realised values (pure: the forecast model and dates)
    "pyfunc": "features",
    "expectations": "expectations",
    "fit": "training",
    "plots": "training",
    "train": "training",
    "profile_fill": "training",
    "serve": "serving",
    "routes": "serving",
    "answers": "serving",
    "scorecard_answers": "serving",
    "scoring": "serving",
    "iforest_compiled": "serving",
    "profiles": "serving",
    "forecast_file": "serving",
    "monitor": "monitoring",
    "live": "monitoring",
    "cli": "apps",
    "demo": "apps",
}
FAMILY_NAME = re.compile(r"credit[-_]risk|transaction[-_]anomaly|transaction[-_]category|spending[-_]forecast|asset[-_]valuation")
PLATFORM = ("ledgerline", "features", "expectations", "training", "serving", "monitoring", "apps", "dags")
REGISTRY = ROOT / "ledgerline" / "families.py"


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _layer(module: str) -> str:
    """The layer a module ranks with (a family's module: the layer of its kind)."""
    parts = module.split(".")
    if parts[0] == "families":
        if len(parts) <= 2:
            return "ledgerline"  # a family's __init__: nothing in it
        kind = parts[2]
        assert kind in FAMILY_MODULE_LAYER, f"{module}: give the module kind '{kind}' a layer in FAMILY_MODULE_LAYER"
        return FAMILY_MODULE_LAYER[kind]
    return parts[0]


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "families" and len(parts) > 1 else None


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
        layer = _layer(module)
        for target in sorted(_imports(path)):
            if target not in modules:  # "from pkg import name" where name is not a module
                continue
            t_layer = _layer(target)
            if RANK[t_layer] > RANK[layer] or (RANK[t_layer] == RANK[layer] and t_layer != layer):
                problems.append(f"{module} ({layer}) imports {target} ({t_layer})")
    assert not problems, "imports that go up or sideways:\n  " + "\n  ".join(problems)


def test_the_platform_reaches_families_only_through_the_registry():
    modules = _modules()
    problems = []
    for module, path in sorted(modules.items()):
        if _family(module) is not None:
            continue
        problems += [f"{module} imports {t}" for t in sorted(_imports(path)) if t.split(".")[0] == "families"]
    assert not problems, "platform modules importing a family (use ledgerline.families' lookups):\n  " + "\n  ".join(problems)


def test_no_family_imports_another():
    modules = _modules()
    problems = []
    for module, path in sorted(modules.items()):
        own = _family(module)
        if own is None:
            continue
        for target in sorted(_imports(path)):
            other = _family(target)
            if other is not None and other != own:
                problems.append(f"{module} imports {target}")
    assert not problems, "families importing another family (move the shared piece into the platform):\n  " + "\n  ".join(problems)


def test_no_platform_file_names_a_family():
    problems = []
    for top in PLATFORM:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == REGISTRY or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if FAMILY_NAME.search(line):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not problems, (
        "platform files naming a family (a family's code lives in families/<stem>/; the platform asks the "
        "registry):\n  " + "\n  ".join(problems)
    )


def test_every_registered_family_is_one_folder_with_its_plugins():
    from ledgerline.families import FAMILIES, PLUGIN_MODULES

    for name, stem in FAMILIES.items():
        folder = ROOT / "families" / stem
        assert folder.is_dir(), f"{name}: no folder families/{stem}/"
        for module in PLUGIN_MODULES.values():
            assert (folder / f"{module}.py").is_file(), f"{name}: no families/{stem}/{module}.py"
