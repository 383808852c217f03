"""libinjection called through its C entry points answers exactly as the Python binding does."""

from __future__ import annotations

import json
from pathlib import Path

import libinjection
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.stages.detection import libinj
from tests.corpora import GOTESTWAF, require

BENCH = Path(__file__).resolve().parents[3] / "bench" / "detection"
CORPORA = [
    BENCH / "benign.jsonl",
    GOTESTWAF,
]


def _binding(text: str) -> tuple[bool, bool]:
    return (bool(libinjection.is_sql_injection(text)["is_sqli"]), bool(libinjection.is_xss(text)["is_xss"]))


def test_the_direct_entry_points_are_used() -> None:
    """The binding installed here exports libinjection's C functions: the fast path is on."""
    assert libinj.BACKEND == "ctypes"


@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
def test_same_answers_as_the_binding_over_the_corpora(corpus: Path) -> None:
    """Every path, header value and body of both corpora gets the binding's answers."""
    require(corpus)
    checked = 0
    for line in corpus.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for text in (row["path"], row.get("body") or "", *(v for _, v in row["headers"])):
            assert (libinj.is_sqli(text), libinj.is_xss(text)) == _binding(text), text[:200]
            checked += 1
    assert checked > 1000


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("'\"`-#/*;=<>() 1aAoOrRsSeElLcCtTuUnNiI\\%\x00é")), max_size=60))
def test_same_answers_on_sql_and_markup_fragments(text: str) -> None:
    """Random fragments built from SQL and HTML syntax get the binding's answers."""
    assert (libinj.is_sqli(text), libinj.is_xss(text)) == _binding(text)


def test_lone_surrogates_are_encoded_not_raised() -> None:
    """A decoded "\\ud800" escape leaves a lone surrogate, which has no UTF-8 form: it is
    inspected as U+FFFD (as a JavaScript runtime would send it), never an exception."""
    assert libinj.is_sqli("1' OR '1'='1\ud800") is True
    assert libinj.is_xss("<img src=x onerror=alert(1)>\udfff") is True
    assert libinj.is_sqli("O'Brien\ud800") is False
