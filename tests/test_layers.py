"""The module graph of kdlib: no import cycle (module-level or inside functions), and the layers point one way
(data and the training loop know nothing of pruning, studies or grids)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kdlib"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every kdlib module ``path`` imports anywhere in its code (``from .x import y`` names ``x.y`` when ``y`` is
    a module)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "kdlib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "kdlib":
                continue
            subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules}
            out |= subs or {target}
            if subs and len(subs) < len(node.names):
                out.add(target)
    return {m for m in out if m in modules and m != here}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for n in GRAPH.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_the_walker_sees_imports_inside_functions():
    assert "kdlib.study" in GRAPH["kdlib.distributed"] and "kdlib.train" in GRAPH["kdlib.prune.proxy"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_kdlib_has_no_import_cycle():
    assert find_cycle(GRAPH) is None


@pytest.mark.parametrize("module", ["kdlib.data", "kdlib.imagenet", "kdlib.train", "kdlib.augment", "kdlib.store",
                                    "kdlib.processes", "kdlib.models", "kdlib.distill", "kdlib.stack",
                                    "kdlib.grouped", "kdlib.group_size"])
def test_data_and_the_loop_know_nothing_of_pruning_or_grids(module):
    above = {"kdlib.prune", "kdlib.study", "kdlib.executors", "kdlib.alpha_rule", "kdlib.distributed"}
    assert not {m for m in reachable(module) if m.split(".")[:2] == ["kdlib", "prune"] or m in above}


def test_importing_the_executors_leaves_torch_unloaded():
    """A driver that only schedules (kdlib.executors) does not pay torch's start-up; workers import it."""
    import os
    import subprocess
    import sys

    code = "import sys, kdlib.executors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}, check=True)
    assert out.stdout.strip() == "False"
