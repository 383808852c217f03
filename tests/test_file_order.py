"""The order tests/conftest.py gives xdist: the slowest files first, each file's tests
together and in their order."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from tests.conftest import SLOWEST_FILES, pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parents[1]


def test_every_listed_slow_file_exists_once() -> None:
    """A renamed or deleted file would silently lose its place at the front: each entry is a
    test file that exists, listed once."""
    assert len(set(SLOWEST_FILES)) == len(SLOWEST_FILES)
    missing = [path for path in SLOWEST_FILES if not (ROOT / path).is_file()]
    assert missing == []


class _Item:
    """What the hook reads of a collected test: its node ID."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_slow_files_first_then_most_tests_first_each_file_in_its_order() -> None:
    """The listed files come first in the listed order; the others follow by their number of
    tests, most first, ties in collection order; a file's tests stay together and in order."""
    first, second = SLOWEST_FILES[0], SLOWEST_FILES[1]
    collected = [
        "tests/a/test_one.py::t1",
        f"{second}::s1",
        "tests/b/test_three.py::t1", "tests/b/test_three.py::t2", "tests/b/test_three.py::t3",
        "tests/c/test_one.py::t1",
        f"{first}::f1", f"{first}::f2",
        "tests/d/test_two.py::t2", "tests/d/test_two.py::t1",
    ]
    items = [_Item(nodeid) for nodeid in collected]
    pytest_collection_modifyitems(cast("list[pytest.Item]", items))
    assert [item.nodeid for item in items] == [
        f"{first}::f1", f"{first}::f2",
        f"{second}::s1",
        "tests/b/test_three.py::t1", "tests/b/test_three.py::t2", "tests/b/test_three.py::t3",
        "tests/d/test_two.py::t2", "tests/d/test_two.py::t1",
        "tests/a/test_one.py::t1",
        "tests/c/test_one.py::t1",
    ]
