"""scripts/check_promises.py: every test docs/promises.md names exists, and the checker
itself sees a file, a test or a continued name that is not there."""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers.repo import REPO


@pytest.fixture(scope="module")
def checker():
    """scripts/check_promises.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "check_promises", REPO / "scripts" / "check_promises.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_test_the_promises_page_names_exists(checker):
    page = REPO / "docs" / "promises.md"
    assert checker.missing(page) == []
    assert len(checker.references(page.read_text())) > 200  # the page was read


def test_the_checker_sees_what_is_not_there(checker, tmp_path):
    tests = tmp_path / "tests"
    (tests / "core").mkdir(parents=True)
    (tests / "core" / "test_a.py").write_text(
        "def test_one():\n    pass\n\n\nclass SomeTest:\n    def test_method(self):\n        pass\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "| a | `core/test_a.py::test_one`, `::test_two`, `core/test_b.py::test_one` |\n"
        "| b | `core/test_a.py::SomeTest::test_method[x]`, `::test_method`, `::test_one` |\n"
        "| c | `core/test_a.py::SomeTest::test_other`, `core/test_a.py` (all) |\n"
        "| d | `core/test_a.py::test_one[p-*]`, `[q]`, `not/a/reference` |\n"
        "| e | `tests/core/test_a.py::test_one`, `tests/core/test_a.py::test_three` |\n"
    )
    assert checker.missing(page, tests) == [
        "page.md:1: tests/core/test_a.py has no test test_two",
        "page.md:1: tests/core/test_b.py does not exist",
        "page.md:3: tests/core/test_a.py has no test SomeTest::test_other",
        "page.md:5: tests/core/test_a.py has no test test_three",
    ]
    assert len(checker.references(page.read_text())) == 11
