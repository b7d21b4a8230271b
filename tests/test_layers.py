"""Imports go down the layers only (the README's layout): a module never imports one from a higher
layer, inside functions included; no module imports its own importer (no circles)."""

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
    bad = []
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
                bad.append(f"{module} imports {target}")
    assert not bad, bad


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


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_imports_inside_functions_say_why():
    """An import inside a function is there for a reason written on its line (`# late: ...`): an
    optional or slow dependency, a platform-only module; never one of recursa's own (that would
    hide a circle). Everything else is imported at the top of its module."""
    internal, unexplained = [], []
    for path in sorted((REPO / "recursa").rglob("*.py")):
        lines = path.read_text().splitlines()
        for fn in _functions(ast.parse(path.read_text())):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    if "# late:" not in lines[node.lineno - 1]:
                        unexplained.append(where)
                    if isinstance(node, ast.ImportFrom) and node.level:
                        internal.append(f"{path.relative_to(REPO / 'recursa')}:{node.module}")
    assert not unexplained, unexplained
    assert not internal, internal


def test_the_package_top_level_stays_small():
    """The top level holds the library's basics; everything else lives in a package by role."""
    top = sorted(p.stem for p in (REPO / "recursa").glob("*.py"))
    assert len(top) <= 9, top
    assert {p.name for p in (REPO / "recursa").iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == {
        "cli", "data", "evaluation", "inference", "models", "tasks", "tools", "training"}


#: Functions longer than 60 lines, each a single pass that reads best whole (named in the README's
#: layout section). The list may only shrink: a new long function fails the test below.
LONG_FUNCTIONS = {
    "tasks/arc.py:build_arc", "tasks/sudoku_extreme.py:build_sudoku_extreme", "tasks/sudoku.py:build_sudoku",
    "tasks/maze.py:build_maze",  # dataset builders: read, split, augment, write, in order
    "tasks/sudoku.py:solve",  # the exact solver's search loop
    "inference/engine.py:think",  # the engine's one loop over supervision steps (its state stays local)
    "evaluation/evaluate.py:evaluate",  # the batched loop over a split and its per-step tallies
    "inference/official.py:read_official_config",  # the official config's field table
}


def test_long_functions_are_the_documented_few_and_the_trainer_is_small():
    long = set()
    for path in sorted((REPO / "recursa").rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            if fn.end_lineno - fn.lineno + 1 > 60:
                long.add(f"{path.relative_to(REPO / 'recursa')}:{fn.name}")
    assert long <= LONG_FUNCTIONS, sorted(long - LONG_FUNCTIONS)
    tree = ast.parse((REPO / "recursa" / "training" / "trainer.py").read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    assert trainer.end_lineno - trainer.lineno + 1 <= 250


def test_no_import_circles():
    """The graph of recursa's module imports (top level and inside functions) has no cycle."""
    graph: dict[str, set[str]] = {}
    modules = {}
    for path in sorted((REPO / "recursa").rglob("*.py")):
        rel = path.relative_to(REPO / "recursa").with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts) or "__init__"
        modules[module] = path
    for module, path in modules.items():
        deps = set()
        for target in _imports(path, module):
            while target and target not in modules:  # `from .pkg import name`: the package
                target = target.rpartition(".")[0]
            if target and target != module:
                deps.add(target)
        graph[module] = deps
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError(" -> ".join(stack[stack.index(d):] + [d]) if d in stack else f"{m} -> {d}")
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
