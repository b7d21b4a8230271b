"""Imports go down the layers only (the README's layout): a module never imports one from a higher
layer, inside functions included. One documented exception: data/format.py checks task.json
against the task registry."""

import ast

from .conftest import REPO

LAYERS = [
    ("errors", "storage", "perf", "device", "config"),
    ("models", "data"),
    ("tasks",),
    ("inference",),
    ("evaluation",),
    ("training",),
    ("tools",),
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


def test_the_trainer_holds_no_checkpoint_format():
    """The checkpoint format lives in inference/checkpoint.py and training/state.py: the trainer hands it objects and never
    names a file or a tensor key of the format."""
    src = (REPO / "recursa" / "training" / "trainer.py").read_text()
    for fragment in ("train_state.safetensors", "train_state.json", '"optim.', '"carry.', '"rng.torch"', "safetensors"):
        assert fragment not in src, fragment


def test_puzzle_specific_code_stays_in_tasks():
    """Outside recursa/tasks/ nothing branches on a family: no `task.name ==`, no comparison with a
    family's name, no family class by name; each family is one module + its line in FAMILIES."""
    import re

    from recursa.tasks import BUILD_COMMANDS, FAMILIES, TASKS
    names = "|".join(re.escape(n) for n in {*TASKS, *BUILD_COMMANDS})
    classes = "|".join(c.__name__ for c in TASKS.values())
    pattern = re.compile(rf"task\.name\s*(==|!=|\bin\b)|(==|!=)\s*[\"']({names})[\"']|\b({classes})\b")
    hits = []
    for path in sorted((REPO / "recursa").rglob("*.py")):
        if "tasks" in path.relative_to(REPO / "recursa").parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not hits, hits
    for m in FAMILIES:  # what a family module declares
        assert m.BUILD.builder is not None and callable(m.BUILD.add_arguments) and callable(m.BUILD.run)
        assert m.TASK is None or TASKS[m.TASK.name] is m.TASK
