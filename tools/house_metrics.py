"""Size and structure figures of the package, as issue 11 ("The house") counts them.

Run from the repository root::

    python tools/house_metrics.py            # the static figures
    python tools/house_metrics.py --tests    # also time the default test run (serial)

Static figures: package lines, largest modules, functions of radon complexity grade C
or worse, import cycles between the package's modules (imports inside functions count;
``if TYPE_CHECKING:`` imports do not, they never run), function-local imports, and the
README's size. Needs ``radon`` for the complexity count (``pip install radon``).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pytest_energy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> tuple[set[str], int]:
    """(package modules imported at run time, count of imports inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    local = 0
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        nonlocal local
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                local += in_function
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        anchor = package.split(".")
                        anchor = anchor[: len(anchor) - child.level + 1]
                        base = ".".join([*anchor, base] if base else anchor)
                    names = [base] + [f"{base}.{alias.name}" for alias in child.names]
                found.update(n for n in names if n.startswith("pytest_energy"))
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return found, local


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strong(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                strong(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in list(graph):
        if node not in index:
            strong(node)
    return cycles


def complexity_c_or_worse(paths: list[Path]) -> list[str] | None:
    try:
        from radon.complexity import cc_rank, cc_visit
    except ImportError:
        return None
    worse = []
    for path in paths:
        for block in cc_visit(path.read_text(encoding="utf-8")):
            if hasattr(block, "methods"):
                continue  # a class: radon also lists each of its methods on its own
            if cc_rank(block.complexity) >= "C":
                worse.append(f"{path.relative_to(ROOT)}:{block.fullname} "
                             f"{cc_rank(block.complexity)} ({block.complexity})")
    return worse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", action="store_true", help="also time the default test run")
    parser.add_argument("--list", action="store_true", help="list the complex functions")
    args = parser.parse_args(argv)
    paths = sorted(PACKAGE.rglob("*.py"))
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in paths}
    graph: dict[str, set[str]] = {}
    local_imports = 0
    modules = {module_name(p) for p in paths}
    for path in paths:
        found, local = imports_of(path)
        local_imports += local
        # "from pkg import mod" names a module; "from mod import func" names the module
        graph[module_name(path)] = {n for n in found if n in modules} - {module_name(path)}
    cycles = import_cycles(graph)
    worse = complexity_c_or_worse(paths)
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])
    readme = (ROOT / "README.md").stat().st_size
    rows = [
        ("package lines", str(sum(sizes.values()))),
        ("modules", str(len(paths))),
        ("largest module", f"{largest[0][1]} ({largest[0][0].relative_to(ROOT)})"),
        ("modules over 400 lines", str(sum(1 for n in sizes.values() if n > 400))),
        ("functions of radon grade C or worse",
         "radon not installed" if worse is None else str(len(worse))),
        ("import cycles (function-local imports count)",
         " ".join([str(len(cycles)), *(" <-> ".join(c) for c in cycles)])),
        ("function-local imports", str(local_imports)),
        ("README bytes", str(readme)),
    ]
    if args.tests:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                              cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        rows.append(("default test run, serial (wall s)", f"{elapsed:.1f} ({tail})"))
    width = max(len(name) for name, _ in rows)
    print(f"{'figure':<{width}}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("\nlargest modules: " + ", ".join(
        f"{p.relative_to(PACKAGE)} {n}" for p, n in largest[:8]))
    if args.list and worse:
        print("\n".join(worse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
