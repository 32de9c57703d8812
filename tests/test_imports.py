"""
How the repository's modules depend on one another: no import cycle anywhere (imports inside
functions count too), and the library code imports no command line.
"""

import ast
import subprocess
import sys

from tests.helpers import REPO

FOLDERS = ("homework", "grader", "benchmarks", "tests")


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, modules: set[str]) -> set[str]:
    """The repository's modules that `path` imports, wherever in the file: `from .x import y` is x.y if that is a module, else x."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.update(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = [path for folder in FOLDERS for path in (REPO / folder).rglob("*.py") if "honest" not in path.parts] + [REPO / "bundle.py"]
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, modules) for path in paths}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph`, as the modules along it, or [] if there is none."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                return stack[stack.index(other) :] + [other]
            if other not in state and (found := visit(other)):
                return found
        state[module] = "done"
        stack.pop()
        return []

    return next((found for module in sorted(graph) if module not in state and (found := visit(module))), [])


def test_the_graph_is_read_right():
    graph = import_graph()
    assert {"homework.cli", "homework.data", "homework.models", "homework.optim", "homework.optim.recipes"} <= graph["homework.fit"]
    assert graph["homework.checkpoint.__main__"] >= {"homework.bignet", "homework.checkpoint"} and graph["homework.checkpoint"] == set()
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"] and cycle({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others():
    assert cycle(import_graph()) == []


def test_the_library_and_the_grader_import_no_command_line():
    """fire is the tools' alone: the data, the checkpoints, the variants and the optimizers load without it."""
    library = ["homework.data", "homework.bignet", "homework.checkpoint", "homework.models", "homework.memory", "homework.half_precision", "homework.lora",
               "homework.low_precision", "homework.qlora", "homework.lower_precision", "homework.optim", "homework.optim.recipes", "homework.optim.sharded", "grader.grade"]  # fmt: skip
    code = f"import sys; sys.modules['fire'] = None\nfor name in {library!r}: __import__(name)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
