"""The ``discovery`` stage alone (sans-IO): the query's parameters typed at the head, the
sensitive data types of a sampled body noted chunk by chunk, and neither a request nor a
response ever changed or refused."""

from __future__ import annotations

import pytest

from bastion.stages.discovery import DiscoveryConfig, DiscoveryStage, value_kind
from bastion.types import Exchange, Request


def _exchange(query: str = "") -> Exchange:
    return Exchange(Request("GET", f"/customers/7?{query}", "/customers/7", query, []), "r-1")


@pytest.mark.parametrize(("value", "kind"), [
    ("42", "integer"), ("-3", "integer"), ("2.5", "number"), ("true", "boolean"), ("false", "boolean"),
    ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", "uuid"), ("alice", "string"), ("", "string"),
    ("1" * 30, "string"),  # too long for a 64-bit integer: a code, not a number
])
def test_value_kinds(value: str, kind: str) -> None:
    """Each value is typed as it looks."""
    assert value_kind(value) == kind


def test_the_head_notes_each_parameter_once_with_its_type() -> None:
    """Parameter names and kinds go into the facts; a name repeated with two kinds is a
    string; nothing is refused and, with ``sample: 0``, no body will be scanned."""
    stage = DiscoveryStage(DiscoveryConfig(sample=0.0))
    ex = _exchange("page=2&tag=a&tag=7&since=2.5&q=")
    assert stage.on_request_head(ex) is None
    assert ex.facts["discovery"] == {"query": {"page": "integer", "tag": "string", "since": "number", "q": "string"}}
    assert stage.on_response_chunk(ex, b'{"email": "alice@example.com"}', True) == b'{"email": "alice@example.com"}'
    assert ex.facts["discovery"] == {"query": {"page": "integer", "tag": "string", "since": "number", "q": "string"}}


def test_a_sampled_body_is_scanned_up_to_the_cap_and_left_as_it_is() -> None:
    """With ``sample: 1`` the kinds in the body are noted once each, in the order found, and
    the chunk goes on unchanged; past ``max_scan_bytes`` nothing more is scanned."""
    stage = DiscoveryStage(DiscoveryConfig(sample=1.0, max_scan_bytes=1024))
    ex = _exchange()
    stage.on_request_head(ex)
    first = b'{"email": "alice@example.com", "card": "4111 1111 1111 1111", "again": "bob@example.com"}'
    assert stage.on_response_chunk(ex, first, False) == first
    filler = b" " * 2000 + b'"ssn": "123-45-6789"'
    assert stage.on_response_chunk(ex, filler, True) == filler
    seen = ex.facts["discovery"]
    assert seen == {"returns": ["email", "card"], "scanned": 1024}


def test_many_parameters_are_capped() -> None:
    """A client sending hundreds of parameters leaves at most 32, each name cut to 64 characters."""
    stage = DiscoveryStage(DiscoveryConfig(sample=0.0))
    ex = _exchange("&".join(f"{n}{'p' * 100}=1" for n in range(300)))
    stage.on_request_head(ex)
    params = ex.facts["discovery"]["query"]  # type: ignore[index]
    assert len(params) == 32 and all(len(name) == 64 for name in params)
