"""The dependency rules of docs/architecture.md, read from the source: a change that breaks one fails here.

Every ``import`` statement counts, at module level or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:`` (annotations only, never executed). Modules are named as installed (``spikecore.accel.contract.config`` for
``accel/contract/config.py``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Where each installed package's source lives (pyproject.toml's package-dir).
PACKAGE_DIRS = {"spikecore.accel": "accel", "spikecore.models": "models", "spikecore.sim": "sim",
                "spikecore.rtl": "rtl", "spikecore": "spikecore"}
#: The base: small modules every layer may use, which use no other layer.
BASE = ("spikecore.atomic", "spikecore.errors", "spikecore.yamlio")


def module_files() -> dict:
    """``{module name: path}`` of every module of the package."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = module_files()


def imports_of(path: Path, name: str, is_package: bool) -> list:
    """``[(imported module, imported names)]`` of every import statement in ``path``."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    type_only = {id(inner) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                 for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = tuple(alias.name for alias in node.names)
            # `from package import module` imports the module
            found.append((base, names))
            found += [(f"{base}.{n}", ()) for n in names if f"{base}.{n}" in MODULES]
    return found


def internal_dependencies() -> dict:
    """``{module: {internal module it imports}}``."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for module, _ in imports_of(path, name, path.name == "__init__.py"):
            if module.startswith("spikecore") and module in MODULES and module != name:
                deps.add(module)
        graph[name] = deps
    return graph


GRAPH = internal_dependencies()


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def violations(source_layer: str, forbidden: tuple, graph=None) -> list:
    """``["A imports B"]`` for every module A of ``source_layer`` importing a module of a ``forbidden`` layer."""
    return sorted(f"{module} imports {dep}" for module, deps in (graph or GRAPH).items()
                  if in_layer(module, source_layer) for dep in deps if any(in_layer(dep, f) for f in forbidden))


def test_the_scan_sees_the_package():
    """A scan that finds nothing would pass every rule below."""
    assert len(MODULES) > 40
    assert "spikecore.accel.contract.compiler" in GRAPH["spikecore.accel.flows.cli"] | {
        dep for dep in GRAPH["spikecore.api"]}
    assert "spikecore.accel.contract.config" in GRAPH["spikecore.rtl.core"]


def test_base_modules_import_only_the_base():
    found = sorted(f"{m} imports {d}" for m in BASE for d in GRAPH[m] if d not in BASE)
    assert found == []


def test_models_import_no_hardware_module():
    assert violations("spikecore.models", ("spikecore.accel", "spikecore.sim", "spikecore.rtl", "spikecore.api")) == []


def test_simulator_imports_neither_rtl_nor_models():
    assert violations("spikecore.sim", ("spikecore.models", "spikecore.rtl", "spikecore.accel.flows",
                                        "spikecore.api")) == []


def test_rtl_imports_neither_simulator_nor_models():
    assert violations("spikecore.rtl", ("spikecore.models", "spikecore.sim", "spikecore.accel.flows",
                                        "spikecore.api")) == []


def test_compiler_contract_imports_no_flow_simulator_or_rtl():
    assert violations("spikecore.accel.contract", ("spikecore.accel.flows", "spikecore.sim", "spikecore.rtl",
                                                   "spikecore.api")) == []


def test_no_two_modules_import_each_other():
    cycles = sorted(f"{a} <-> {b}" for a, deps in GRAPH.items() for b in deps if a < b and a in GRAPH.get(b, ()))
    assert cycles == []


def scripts_and_tests() -> list:
    return sorted(ROOT.glob("tests/**/*.py")) + sorted(ROOT.glob("scripts/*.py")) + sorted(ROOT.glob("bench/*.py")) \
        + [ROOT / "bench" / "run"]


@pytest.mark.parametrize("path", list(MODULES.values()) + scripts_and_tests(),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_underscore_name_is_imported_from_another_module(path):
    name = next((m for m, p in MODULES.items() if p == path), "__main__")
    private = [f"{module}.{n}" for module, names in imports_of(path, name, path.name == "__init__.py")
               if module.startswith("spikecore") for n in names if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_the_old_import_names_are_gone():
    """accel, models, sim and rtl are other distributions' names: nothing imports them bare any more."""
    bare = sorted(f"{path.relative_to(ROOT)}: {module}" for path in list(MODULES.values()) + scripts_and_tests()
                  for module, _ in imports_of(path, "__main__", False)
                  if module.split(".")[0] in ("accel", "models", "sim", "rtl"))
    assert bare == []


def test_a_user_models_package_does_not_shadow_ours(tmp_path):
    """Issue 17: with the user's own ``models`` package on the path, loading a checkpoint still works."""
    import subprocess
    import sys

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('the user models package')\n")
    code = ("from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path\n"
            "net, _ = load_checkpoint(shipped_checkpoint_path()); print(type(net).__name__)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "DigitsNet"


def test_planted_violation_is_found():
    """The rules can fail: a planted import of the RTL from the simulator is reported."""
    planted = {**GRAPH, "spikecore.sim.cost": GRAPH["spikecore.sim.cost"] | {"spikecore.rtl.core"}}
    assert "spikecore.sim.cost imports spikecore.rtl.core" in violations("spikecore.sim", ("spikecore.rtl",), planted)


def test_the_compiler_passes_are_listed_in_the_docs():
    """docs/api.md's pass table names exactly the compiler's passes, in order."""
    import re

    from spikecore.accel.contract.compiler import PASSES

    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| pass | does |"):]
    listed = re.findall(r"^\| `(\w+)` \|", table.split("\n\n")[0], re.M)
    assert listed == [step.name for step in PASSES]
