"""The package's shape: a folder per stage, no import circles, no private names across modules, fbench imports
at the top of library modules, and a public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fbench"
# Lazy imports are allowed for these optional (or heavy, absent on a bare GPU machine) packages only.
OPTIONAL = {"mlflow", "optuna", "fvcore", "submitit", "cloudpickle", "matplotlib", "cv2", "sqlalchemy", "dlib"}
TOP_LEVEL_MODULES = {"cli", "registry", "contract", "profile", "tracking", "errors", "progress", "pipeline"}


def module_files() -> dict[str, Path]:
    """Every module of fbench (with architectures/ under fbench.architectures), by dotted name."""
    files = {}
    for base, prefix in ((PACKAGE, "fbench"), (ROOT / "architectures", "fbench.architectures")):
        for path in base.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join((prefix, *parts))] = path
    return files


def imports_of(name: str, path: Path, modules: set[str]) -> list[tuple[str, int, bool]]:
    """(imported fbench module, line, inside a function) for every import in ``path``."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(child) for function in functions for child in ast.walk(function) if child is not function}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno, id(node) in nested))
    return found


def in_type_checking_block(path: Path, line: int) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                and node.lineno <= line <= max(getattr(n, "lineno", 0) for n in ast.walk(node))):
            return True
    return False


def test_no_import_circles_counting_imports_inside_functions():
    files = module_files()
    graph = {name: set() for name in files}
    for name, path in files.items():
        for target, line, _ in imports_of(name, path, set(files)):
            if not in_type_checking_block(path, line) and not name.startswith(target + "."):
                graph[name].add(target)
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_fbench_imports_sit_at_the_top_outside_the_cli():
    files = module_files()
    inside = [f"{path.relative_to(ROOT)}:{line} imports {target}" for name, path in files.items()
              if name != "fbench.cli" for target, line, nested in imports_of(name, path, set(files)) if nested]
    assert not inside, "\n".join(inside)


def test_lazy_imports_are_only_of_optional_packages():
    lazy = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "architectures").glob("*.py")]:
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    roots = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    roots = [(node.module or "").split(".")[0]]
                else:
                    continue
                lazy += [f"{path.relative_to(ROOT)}:{node.lineno} {root}" for root in roots if root not in OPTIONAL]
    assert not lazy, "\n".join(lazy)


def test_no_private_name_is_imported_across_modules():
    private = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "architectures").glob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("fbench", "architectures")):
                private += [f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}" for alias in node.names
                            if alias.name.startswith("_") and alias.name != "__version__"]
    assert not private, "\n".join(private)


def test_the_top_level_holds_at_most_eight_modules_and_a_folder_per_stage():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == TOP_LEVEL_MODULES
    for stage in ("suite", "run", "score", "report", "data", "engine", "perturb", "tune"):
        assert (PACKAGE / stage / "__init__.py").is_file(), stage


def test_public_api_without_loading_torch():
    code = ("import sys, fbench; assert 'torch' not in sys.modules; "
            "fbench.register_architecture, fbench.get_architecture, fbench.load_suite, fbench.run_suite; "
            "assert callable(fbench.run_suite) and fbench.__version__; "
            "[getattr(fbench, name) for name in fbench.__all__]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)
