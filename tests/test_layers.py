"""Imports go down the layers only (the README's layout): a module never imports one from a higher
layer, inside functions included. One documented exception: data/format.py checks task.json
against the task registry."""

import ast

from .conftest import REPO

LAYERS = [
    ("errors", "storage", "perf", "device", "config"),
    ("models", "data"),
    ("tasks",),
    ("evaluation",),
    ("training",),
    ("inference", "display", "official"),
    ("demo", "bench", "bench_official"),
    ("cli", "__main__", "__init__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
ALLOWED = {("data.format", "tasks")}


def _unit(module: str) -> str:
    return module.split(".")[0]


def _imports(path, module: str):
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
            if not node.module:  # from . import x, y
                for alias in node.names:
                    yield f"{target}.{alias.name}".strip(".")
            else:
                yield target
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recursa."):
            yield node.module[len("recursa."):]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("recursa."):
                    yield alias.name[len("recursa."):]


def test_no_module_imports_from_a_higher_layer():
    root = REPO / "recursa"
    bad, excused = [], set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts) or "__init__"
        me = _unit(module) if module != "__init__" else "__init__"
        assert me in RANK, f"{module}: put it in a layer of tests/test_layers.py"
        for target in _imports(path, module if path.name != "__init__.py" else module):
            them = _unit(target.replace("recursa.", "")) if target else "__init__"
            if them not in RANK or them == me:
                continue
            if RANK[them] > RANK[me]:
                if (module, them) in ALLOWED:
                    excused.add((module, them))
                else:
                    bad.append(f"{module} imports {target}")
    assert not bad, bad
    assert excused == ALLOWED  # the check sees imports inside functions (the exception is one)
