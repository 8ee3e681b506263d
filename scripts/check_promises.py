"""Checks that every test docs/promises.md names exists, so the page cannot point at a test
that moved or was renamed.

A reference is a backticked ``path.py::name`` (the path under ``tests/``, with or without
``tests/`` in front; ``name`` a test function, or ``Class::method`` of a test class), a
parameter id after it in brackets (``[shuffle_*]``, not checked), a ``::name`` that
continues the file (and class) named before it on the same line, or a whole file
(```path.py``` (all)). The names are found with ``ast`` in the test files, without
importing them.

    python scripts/check_promises.py          # exits 1 and lists what is missing
    python scripts/check_promises.py FILE.md  # another page of the same form
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
REFERENCE = re.compile(r"`([^`\s]+)`")
FULL = re.compile(r"^(?:tests/)?((?:[a-z_]+/)*test_[a-z0-9_]+\.py)(?:::(.+))?$")
CONTINUED = re.compile(r"^::(.+)$")


def test_names(path: Path) -> set[str]:
    """The test functions of a file and its classes' methods, as ``name`` and
    ``Class::method``."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


def references(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """Every reference of the page as ``(line number, file under tests/, names)``: the
    names it may stand for (none for a whole file; a continuation after a class's test is
    that class's method or a function of the file)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        path = test_class = None
        for token in REFERENCE.findall(line):
            full, continued = FULL.match(token), CONTINUED.match(token)
            if full:
                path, name = full.group(1), full.group(2)
                name = re.sub(r"\[.*\]$", "", name) if name else None
                test_class = name.split("::")[0] if name and "::" in name else None
                found.append((number, path, (name,) if name else ()))
            elif continued and path:
                name = re.sub(r"\[.*\]$", "", continued.group(1))
                in_class = (f"{test_class}::{name}",) if test_class and "::" not in name else ()
                found.append((number, path, (*in_class, name)))
    return found


def missing(page: Path, tests: Path = TESTS) -> list[str]:
    """What the page names that does not exist, one line each."""
    names: dict[Path, set[str]] = {}
    problems = []
    for number, path, candidates in references(page.read_text()):
        file = tests / path
        if not file.is_file():
            problems.append(f"{page.name}:{number}: tests/{path} does not exist")
            continue
        if not candidates:
            continue
        if file not in names:
            names[file] = test_names(file)
        if not names[file] & set(candidates):
            problems.append(f"{page.name}:{number}: tests/{path} has no test {candidates[-1]}")
    return problems


def main(argv: list[str]) -> int:
    page = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "promises.md"
    problems = missing(page)
    for problem in problems:
        print(problem)
    count = len(references(page.read_text()))
    print(f"{count} references, {len(problems)} missing", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
