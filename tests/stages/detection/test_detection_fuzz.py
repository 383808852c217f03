"""Property tests: the normaliser and the inspector never crash and stay bounded."""

from __future__ import annotations

import json

from detection_helpers import make_request
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.stages.detection import DetectionConfig, DetectionEngine
from bastion.stages.detection.inspect import extract
from bastion.stages.detection.normalize import MAX_VIEW_CHARS, MAX_VIEWS, views

_ENGINE = DetectionEngine(DetectionConfig(paranoia=4))
_ALPHABET = st.characters(codec="utf-8") | st.sampled_from(list("%&#;\\ux0<>'\"/*${}:-+=\r\n\x00"))


@settings(max_examples=300, deadline=None)
@given(st.text(_ALPHABET, max_size=400))
def test_views_never_crash_and_are_bounded(value: str) -> None:
    """Any text yields at most MAX_VIEWS views, none longer than MAX_VIEW_CHARS, raw first."""
    out = views(value)
    assert 1 <= len(out) <= MAX_VIEWS
    assert all(len(v) <= MAX_VIEW_CHARS for v in out)
    assert out[0] == value[:MAX_VIEW_CHARS]


@settings(max_examples=150, deadline=None)
@given(
    target=st.text(_ALPHABET, max_size=120),
    header=st.text(_ALPHABET, max_size=80),
    body=st.binary(max_size=400),
    ctype=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "text/plain",
            "",
        ]
    ),
)
def test_inspect_and_evaluate_never_crash(target: str, header: str, body: bytes, ctype: str) -> None:
    """Arbitrary targets, headers and bodies are extracted and evaluated without error."""
    request = make_request(
        "/" + target, method="POST", headers=[("X-Any", header)], body=body, content_type=ctype or None
    )
    inputs = extract(request)
    assert len(inputs) <= 1024
    _ENGINE.evaluate(request)


@settings(max_examples=50, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=40,
    )
)
def test_json_bodies_never_crash(doc: object) -> None:
    """Any JSON document is walked and evaluated without error."""
    request = make_request("/", method="POST", body=json.dumps(doc), content_type="application/json")
    _ENGINE.evaluate(request)


def test_deep_json_is_bounded() -> None:
    """Nesting deeper than the limit is not walked (and does not recurse without bound)."""
    doc: object = "x"
    for _ in range(500):
        doc = {"a": doc}
    request = make_request("/", method="POST", body=json.dumps(doc), content_type="application/json")
    assert all(i.location.count(".") <= 40 for i in extract(request))
