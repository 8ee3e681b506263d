"""Counts the checks in the test suite, so that moving tests can be shown to drop none.

A check is an ``assert`` statement, a call whose name starts with ``assert``
(``self.assertEqual``, ``np.testing.assert_allclose``, ``chex.assert_trees_all_close``, a
helper such as ``assert_same_params``) or a ``pytest.raises``. They are counted in the
source with ``ast`` (a check in a loop or a parametrized test counts once).

    python scripts/count_assertions.py               # the total, then the count per kind
    python scripts/count_assertions.py --by-file     # also the count per file
    python scripts/count_assertions.py --by-test     # the count per test function or
                                                     # helper, named without its file
                                                     # (``Class.function``), to diff
                                                     # before and after a move
    python scripts/count_assertions.py DIR           # another folder than tests/
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _call_name(node: ast.Call) -> str:
    function = node.func
    if isinstance(function, ast.Attribute):
        return function.attr
    if isinstance(function, ast.Name):
        return function.id
    return ""


def _is_pytest_raises(node: ast.Call) -> bool:
    function = node.func
    return (
        isinstance(function, ast.Attribute)
        and function.attr == "raises"
        and isinstance(function.value, ast.Name)
        and function.value.id == "pytest"
    )


def checks(tree: ast.AST) -> collections.Counter:
    """The checks under ``tree``, counted by kind: assert, assert_call, pytest_raises."""
    counts = collections.Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            counts["assert"] += 1
        elif isinstance(node, ast.Call):
            if _is_pytest_raises(node):
                counts["pytest_raises"] += 1
            elif _call_name(node).startswith("assert"):
                counts["assert_call"] += 1
    return counts


def checks_by_function(tree: ast.Module) -> dict[str, int]:
    """The checks of each function, named ``Class.function`` (nested functions count in
    the function that holds them); checks outside every function under ``<module>``."""
    counts: dict[str, int] = collections.Counter()
    inside = set()

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                counts[prefix + child.name] += sum(checks(child).values())
                inside.update(id(n) for n in ast.walk(child))
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    outside = 0
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Assert):
            outside += 1
        elif isinstance(node, ast.Call) and (
            _is_pytest_raises(node) or _call_name(node).startswith("assert")
        ):
            outside += 1
    if outside:
        counts["<module>"] += outside
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "tests"))
    parser.add_argument("--by-file", action="store_true")
    parser.add_argument("--by-test", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    total = collections.Counter()
    by_test = collections.Counter()
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        counts = checks(tree)
        total.update(counts)
        if args.by_file:
            print(f"{sum(counts.values()):6d}  {path.relative_to(folder)}")
        if args.by_test:
            for name, n in checks_by_function(tree).items():
                by_test[name] += n
    if args.by_test:
        for name, n in sorted(by_test.items()):
            print(f"{n:6d}  {name}")
    kinds = ", ".join(f"{total[k]} {k}" for k in ("assert", "assert_call", "pytest_raises"))
    print(f"{sum(total.values())} checks ({kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
