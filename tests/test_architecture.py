"""The package's floors (docs/ARCHITECTURE.md): imports run down, never up; no cycles; the twin stays apart.

The floors are listed here once, lowest first; a module may import modules of its own floor or of lower ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gtws_dl"

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("gtws_dl", "gtws_dl.conventions", "gtws_dl.grid", "gtws_dl.landmask", "gtws_dl.seasonal",
              "gtws_dl.hashing", "gtws_dl.lock", "gtws_dl.diskspace", "gtws_dl.config", "gtws_dl.schema",
              "gtws_dl.split", "gtws_dl.journal", "gtws_dl.zarr_time", "gtws_dl.heap")),
    ("twin", ("gtws_dl.twin",)),
    ("io", ("gtws_dl.io",)),
    ("cube", ("gtws_dl.cube", "gtws_dl.ingest")),
    ("data", ("gtws_dl.data", "gtws_dl.cells", "gtws_dl.target_base")),
    ("models", ("gtws_dl.models",)),
    ("learn + reconstruct", ("gtws_dl.checkpoint", "gtws_dl.training", "gtws_dl.reconstruct", "gtws_dl.tiling",
                             "gtws_dl.recon_store", "gtws_dl.prefetch", "gtws_dl.blocks", "gtws_dl.carry")),
    ("post", ("gtws_dl.post",)),
    ("infer", ("gtws_dl.inference", "gtws_dl.update")),
    ("evaluate", ("gtws_dl.evaluate",)),
    ("experiments", ("gtws_dl.experiments",)),
    ("commands", ("gtws_dl.cli",)),  # gtws-dl <command>: runs the stages' Hydra apps by module name
]
# torch-free floors: products, evaluation and the fits must run where no torch is installed
TORCH_FREE = ("gtws_dl.seasonal", "gtws_dl.cube.store", "gtws_dl.post.publish", "gtws_dl.post.products",
              "gtws_dl.post.series", "gtws_dl.evaluate.skill", "gtws_dl.evaluate.protocol", "gtws_dl.recon_store",
              "gtws_dl.split", "gtws_dl.cells", "gtws_dl.models.baselines", "gtws_dl.evaluate.report")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def floor_of(module: str) -> int:
    """Index into FLOORS of the longest matching prefix (``gtws_dl`` alone is the package root)."""
    best, level = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for pre in prefixes:
            if (module == pre or (pre != "gtws_dl" and module.startswith(pre + "."))) and len(pre) > best:
                best, level = len(pre), i
    if level is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS in tests/test_architecture.py and to "
                             "docs/ARCHITECTURE.md")
    return level


def _resolve(name: str) -> str:
    """The package module an import names (``from gtws_dl.io import era5`` -> ``gtws_dl.io.era5``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a function/class) for every ``gtws_dl`` import in ``path``."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("gtws_dl"):
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    out.append((_resolve(full if full in MODULES else child.module), child.lineno, nested))
            elif isinstance(child, ast.Import):
                out.extend((_resolve(a.name), child.lineno, nested) for a in child.names if a.name.startswith("gtws_dl"))
            visit(child, inner)

    visit(tree, False)
    return out


def test_every_module_is_on_a_floor():
    for name in MODULES:
        floor_of(name)


def test_imports_never_run_up_a_floor():
    bad = []
    for name, path in MODULES.items():
        own = floor_of(name)
        for target, line, _ in imports_of(path):
            if target != name and floor_of(target) > own:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {name} ({FLOORS[own][0]}) imports {target} "
                           f"({FLOORS[floor_of(target)][0]})")
    assert not bad, "imports against the flow:\n" + "\n".join(bad)


def test_nothing_but_the_twin_imports_the_twin_and_the_twin_imports_only_core():
    bad = []
    for name, path in MODULES.items():
        in_twin = name.startswith("gtws_dl.twin")
        for target, line, _ in imports_of(path):
            if not in_twin and target.startswith("gtws_dl.twin"):
                bad.append(f"{name}:{line} imports {target}: the twin talks to the rest only through its files")
            if in_twin and not target.startswith("gtws_dl.twin") and floor_of(target) != 0:
                bad.append(f"{name}:{line} imports {target}: the twin may use only the core floor")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {name: {t for t, _, _ in imports_of(p) if t != name and not name.startswith(t + ".")}
             for name, p in MODULES.items()}
    # a package __init__ importing its own submodules is not a cycle of concepts; drop parent -> child edges
    state: dict[str, int] = {}
    cycles = []

    def dfs(n, stack):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if m.startswith(n + "."):
                continue
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                dfs(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n, [n])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_package_imports_sit_at_module_level():
    """Hidden imports hide the dependency graph; a lazy optional heavy dependency is not a package import."""
    bad = [f"{path.relative_to(PKG.parent)}:{line} imports {t} inside a function"
           for name, path in MODULES.items() for t, line, nested in imports_of(path) if nested]
    assert not bad, "\n".join(bad)


def test_long_modules_say_why():
    bad = []
    for path in MODULES.values():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            if "Size:" not in doc:
                bad.append(f"{path.relative_to(PKG.parent)}: {n} lines and no 'Size:' reason in its docstring")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_torch_free_modules_import_without_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules or 'lightning' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False", f"importing {module} imports torch/lightning"
