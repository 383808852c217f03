"""The JSON limits checked on a body's bytes (``bastion.proxy.jsonscan``): exact against a
parsed document's own counts, and cheap on the bodies they exist to refuse."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.config.model import Limits
from bastion.proxy import jsonscan
from bastion.proxy.jsonscan import is_json, over_json_limits

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('ab,:[]{}" \\\n\u00e9'), max_size=12),
)
documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.text(alphabet=st.sampled_from('k,:[]{}" \\'), max_size=6), inner, max_size=5),
    max_leaves=40,
)


def _facts(value: Any, depth: int = 0) -> tuple[int, int, int, int, int]:
    """(depth, keys, array elements, longest string as sent, longest number) of ``value``."""
    if isinstance(value, dict):
        facts = [_facts(v, depth + 1) for v in value.values()]
        keys = [len(json.dumps(k).encode()) - 2 for k in value]
        return (max([depth + 1, *(f[0] for f in facts)]), len(value) + sum(f[1] for f in facts),
                sum(f[2] for f in facts), max([0, *keys, *(f[3] for f in facts)]), max([0, *(f[4] for f in facts)]))
    if isinstance(value, list):
        facts = [_facts(v, depth + 1) for v in value]
        return (max([depth + 1, *(f[0] for f in facts)]), sum(f[1] for f in facts),
                len(value) + sum(f[2] for f in facts), max([0, *(f[3] for f in facts)]),
                max([0, *(f[4] for f in facts)]))
    if isinstance(value, str):
        return depth, 0, 0, len(json.dumps(value).encode()) - 2, 0
    if isinstance(value, bool) or value is None:
        return depth, 0, 0, 0, 0
    return depth, 0, 0, 0, len(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(documents, st.booleans(), st.sampled_from([64 * 1024, 1, 3, 8]))
def test_each_limit_is_exact(doc: Any, pretty: bool, window: int) -> None:
    """For any document (strings full of brackets, commas, colons, quotes and escapes;
    compact or indented), each limit set to the document's own count passes, and set one
    lower refuses with that limit's reason: the byte-level counts are the parser's. Also
    with windows of a few bytes, so that strings straddle the windows' edges."""
    with patch.object(jsonscan, "_WINDOW", window):
        _check_exact(doc, pretty)


def _check_exact(doc: Any, pretty: bool) -> None:
    body = json.dumps(doc, indent=2 if pretty else None).encode()
    depth, keys, items, string, number = _facts(doc)
    exact = Limits(max_json_depth=max(depth, 1), max_json_keys=keys, max_json_array_items=items,
                   max_json_string_bytes=string, max_json_number_chars=max(number, 1))
    assert over_json_limits(body, exact) is None
    lower = [("max_json_keys", keys, "json.too_many_keys"), ("max_json_array_items", items, "json.too_many_items"),
             ("max_json_depth", depth, "json.too_deep"), ("max_json_string_bytes", string, "json.string_too_long"),
             ("max_json_number_chars", number, "json.number_too_long")]
    for field, value, reason in lower:
        if value >= (2 if field in ("max_json_depth", "max_json_number_chars") else 1):
            over = over_json_limits(body, exact.model_copy(update={field: value - 1}))
            assert over is not None and over[0] == reason, (field, value, over)


def test_huge_documents_are_refused_without_being_built() -> None:
    """A 10 MB array of small numbers and a 1M-key object are refused for their counts while
    allocating little beyond a copy of the body (a parser would allocate many times it)."""
    limits = Limits()
    array = b"[" + b"1," * 5_000_000 + b"1]"
    keys = b"{" + b",".join(b'"k%d":0' % i for i in range(1_000_000)) + b"}"
    for body, reason in ((array, "json.too_many_items"), (keys, "json.too_many_keys")):
        tracemalloc.start()
        over = over_json_limits(body, limits)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert over is not None and over[0] == reason
        assert peak < 2.5 * len(body), (reason, peak, len(body))


def test_what_counts_as_json() -> None:
    """JSON media types (with parameters, any case, ``+json``) are checked; other media types
    are not; with no Content-Type, a body that starts like a document is."""
    assert is_json("application/json; charset=utf-8", b"")
    assert is_json("Application/Problem+JSON", b"")
    assert not is_json("text/plain", b"[1]")
    assert is_json(None, b"  \n[1]") and is_json(None, b"{}")
    assert not is_json(None, b"a=1")
